/**
 * Scopes by MCP method (`services.<name>.method_scopes`): which scopes a JSON-RPC request
 * needs, read from the parsed body, never from the `Mcp-Method`/`Mcp-Name` headers, which
 * nothing guarantees to match it (MCP 2026-07-28 transports, "Server Validation").
 */

export type ScopeNeeds = { ok: true; needed: string[] } | { ok: false; reason: string };

interface Message {
  method?: unknown;
  params?: { name?: unknown };
}

/** The scopes the request in `body` needs under `rules`; a tool-specific key wins over the method's. */
export function scopesNeeded(body: Buffer, rules: Readonly<Record<string, string>>): ScopeNeeds {
  let parsed: unknown;
  try {
    parsed = JSON.parse(body.toString('utf8'));
  } catch {
    return { ok: false, reason: 'the request body is not valid JSON' };
  }
  const messages = (Array.isArray(parsed) ? parsed : [parsed]) as Message[];
  const needed = new Set<string>();
  for (const message of messages) {
    if (!message || typeof message !== 'object' || typeof message.method !== 'string') continue;
    const name = typeof message.params?.name === 'string' ? message.params.name : undefined;
    const scope = (name !== undefined ? rules[`${message.method}:${name}`] : undefined) ?? rules[message.method];
    if (scope) needed.add(scope);
  }
  return { ok: true, needed: [...needed] };
}
