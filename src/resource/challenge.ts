/**
 * `WWW-Authenticate` challenges for MCP endpoints (RFC 6750 §3, RFC 9728 §5.1).
 *
 * `Bearer` first, every value quoted, `resource_metadata` absolute; no `error` when the
 * request carried no credentials (RFC 6750 §3.1), and a description only with an error.
 * Descriptions never contain `=` (so no `scope=` or `error=`), which regex-based client parsers
 * would misread.
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

/**
 * RFC 6750 §3: `error_description` may hold only %x20-21 / %x23-5B / %x5D-7E, so quotes,
 * backslashes, control characters (a CR or LF would split the header) and non-ASCII become
 * spaces. Every `name=` loses its `=`: clients that find parameters with a regular expression
 * (`/scope="([^"]*)"/`, `/resource_metadata="…"/`) must not find one inside the description.
 */
function safeDescription(text: string): string {
  return text
    .replace(/[^\x20\x21\x23-\x5B\x5D-\x7E]/g, ' ')
    .replace(/=/g, ' ')
    .replace(/ {2,}/g, ' ')
    .trim()
    .slice(0, 300);
}

export function bearerChallenge(challenge: Challenge): string {
  // RFC 9728 §5.1: the metadata URL is absolute; a relative one is a bug in the caller.
  if (!URL.canParse(challenge.resourceMetadata)) throw new Error(`resource_metadata must be an absolute URL, not ${challenge.resourceMetadata}`);
  const params: string[] = [];
  if (challenge.error) params.push(`error=${quote(challenge.error)}`);
  const description = challenge.error && challenge.description ? safeDescription(challenge.description) : '';
  if (description) params.push(`error_description=${quote(description)}`);
  if (challenge.scope && challenge.scope.length > 0) params.push(`scope=${quote(challenge.scope.join(' '))}`);
  params.push(`resource_metadata=${quote(challenge.resourceMetadata)}`);
  return `Bearer ${params.join(', ')}`;
}
