/**
 * `WWW-Authenticate` challenges for MCP endpoints (RFC 6750 §3, RFC 9728 §5.1).
 *
 * `Bearer` first, every value quoted, `resource_metadata` absolute; no `error` when the
 * request carried no credentials (RFC 6750 §3.1). Descriptions never contain `scope=` or
 * `error=`, which regex-based client parsers would misread.
 */

export interface Challenge {
  resourceMetadata: string;
  scope?: readonly string[];
  error?: 'invalid_token' | 'insufficient_scope' | 'invalid_request';
  description?: string;
}

function quote(value: string): string {
  return `"${value.replace(/["\\]/g, '\\$&')}"`;
}

export function bearerChallenge(challenge: Challenge): string {
  const params: string[] = [];
  if (challenge.error) params.push(`error=${quote(challenge.error)}`);
  if (challenge.description) params.push(`error_description=${quote(challenge.description.replace(/(scope|error)=/g, '$1 '))}`);
  if (challenge.scope && challenge.scope.length > 0) params.push(`scope=${quote(challenge.scope.join(' '))}`);
  params.push(`resource_metadata=${quote(challenge.resourceMetadata)}`);
  return `Bearer ${params.join(', ')}`;
}
