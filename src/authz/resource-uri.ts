/**
 * Resource URIs (RFC 8707) and their canonical form.
 *
 * Clients send the protected-resource metadata `resource` value back as the `resource`
 * parameter after their own URL normalisation, so `https://GW.example.com:443/demo/mcp/` must
 * mean the same service as `https://gw.example.com/demo/mcp` (MCP authorization, "Canonical
 * Server URI"). We compare canonical forms and always emit one: lower-case scheme and host, no
 * default port, no trailing slash on a non-empty path, no fragment.
 */

/** The canonical form of `value`, or `undefined` when it is not an absolute http(s) URI without a fragment. */
export function canonicalResource(value: string): string | undefined {
  const url = URL.parse(value);
  if (!url || (url.protocol !== 'https:' && url.protocol !== 'http:')) return undefined;
  if (value.includes('#') || url.username || url.password) return undefined;
  let path = url.pathname;
  while (path.length > 1 && path.endsWith('/')) path = path.slice(0, -1);
  // URL already lower-cases scheme and host and drops the scheme's default port.
  return `${url.protocol}//${url.host}${path === '/' ? '' : path}${url.search}`;
}

/** The public URL of a service: the issuer origin plus the service path, in canonical form. */
export function serviceResourceUrl(publicUrl: string, servicePath: string): string {
  const canonical = canonicalResource(new URL(servicePath, publicUrl).href);
  if (!canonical) throw new Error(`cannot build a resource URL from ${publicUrl} and ${servicePath}`);
  return canonical;
}
