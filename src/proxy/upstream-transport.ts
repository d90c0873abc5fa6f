/**
 * How the gateway talks to a service's MCP server (`services.<name>.transport`): given, or read
 * from the upstream URL's scheme. A legacy HTTP+SSE server looks like any http URL, so `sse`
 * is never guessed.
 */
export type UpstreamTransport = 'streamable-http' | 'sse' | 'websocket';

export function upstreamTransport(definition: { upstream?: string | undefined; transport?: UpstreamTransport | undefined }): UpstreamTransport {
  return definition.transport ?? (/^wss?:/i.test(definition.upstream ?? '') ? 'websocket' : 'streamable-http');
}
