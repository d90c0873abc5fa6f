/**
 * Wire errors: every error the gateway sends to a client, from one table.
 *
 * OAuth errors (RFC 6749 §5.2, RFC 6750 §3.1, RFC 7591 §3.2.2, RFC 8707 §2) go to OAuth and
 * resource endpoints as `{ error, error_description }`; JSON-RPC errors go to MCP endpoints as
 * `{ jsonrpc: "2.0", id, error: { code, message } }`. Descriptions are user-safe sentences:
 * internal detail goes to the log, never to the wire.
 */

/** OAuth error codes the gateway itself emits, with the HTTP status each one carries. */
export const OAUTH_ERRORS = {
  invalid_request: 400,
  invalid_client: 401,
  invalid_grant: 400,
  unauthorized_client: 400,
  unsupported_grant_type: 400,
  invalid_scope: 400,
  invalid_target: 400,
  invalid_token: 401,
  insufficient_scope: 403,
  access_denied: 403,
  invalid_redirect_uri: 400,
  invalid_client_metadata: 400,
  temporarily_unavailable: 503,
  server_error: 500,
} as const;

export type OAuthErrorCode = keyof typeof OAUTH_ERRORS;

export class OAuthError extends Error {
  readonly error: OAuthErrorCode;
  readonly status: number;
  readonly description: string;

  constructor(error: OAuthErrorCode, description: string, options?: { cause?: unknown }) {
    super(`${error}: ${description}`, options);
    this.name = 'OAuthError';
    this.error = error;
    this.status = OAUTH_ERRORS[error];
    this.description = description;
  }

  toJSON(): { error: string; error_description: string } {
    return { error: this.error, error_description: this.description };
  }
}

/**
 * JSON-RPC error codes used on MCP paths. The -32000 range is implementation-defined
 * (JSON-RPC 2.0 §5.1); MCP reserves -32002 and -32020..-32022 for its own meanings.
 */
export const JSONRPC_ERRORS = {
  parse_error: -32700,
  invalid_request: -32600,
  internal_error: -32603,
  unauthorized: -32001,
  forbidden: -32003,
  upstream_unavailable: -32010,
  upstream_timeout: -32011,
  service_unavailable: -32012,
  payload_too_large: -32013,
  not_found: -32004,
} as const;

export type JsonRpcErrorKind = keyof typeof JSONRPC_ERRORS;
export type JsonRpcId = string | number | null;

export interface JsonRpcErrorBody {
  jsonrpc: '2.0';
  id: JsonRpcId;
  error: { code: number; message: string };
}

export function jsonRpcError(kind: JsonRpcErrorKind, message: string, id: JsonRpcId = null): JsonRpcErrorBody {
  return { jsonrpc: '2.0', id, error: { code: JSONRPC_ERRORS[kind], message } };
}

/**
 * Internal error codes: stable names for failures inside the gateway, used in logs and in
 * `/ready`. Never sent to clients as such.
 */
export const INTERNAL_ERRORS = {
  CONFIG_INVALID: 'the configuration file failed validation',
  STORE_UNAVAILABLE: 'the store did not answer',
  IDP_DISCOVERY_FAILED: "an upstream identity provider's discovery document could not be loaded",
  IDP_SIGN_IN_FAILED: 'an upstream identity provider refused or broke a sign-in',
  KEYS_UNREADABLE: 'the stored signing keys could not be decrypted with the configured encryption keys',
  KEYS_ROTATION_BUSY: 'another signing key rotation holds the rotation lock',
} as const;

export type InternalErrorCode = keyof typeof INTERNAL_ERRORS;

export class GatehouseError extends Error {
  readonly code: InternalErrorCode;
  constructor(code: InternalErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'GatehouseError';
    this.code = code;
  }
}
