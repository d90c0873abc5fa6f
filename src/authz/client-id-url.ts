/**
 * Which client ID metadata document URLs the gateway fetches at all.
 *
 * oidc-provider already enforces the CIMD rules on the URL (https, a path, no dot segments,
 * no fragment or credentials) and on the fetch (no redirects, 200 only, a size cap, a short
 * timeout, and a connection-time check that the peer is not a special-use address, which
 * pins the resolved address for that request). This check runs first and refuses literal
 * private, loopback and link-local hosts up front, with a clear reason in the log.
 */
import { isIP } from 'node:net';

const PRIVATE_V4 = [
  [0x00000000, 8], [0x0a000000, 8], [0x64400000, 10], [0x7f000000, 8], [0xa9fe0000, 16],
  [0xac100000, 12], [0xc0a80000, 16], [0xc0000000, 24], [0xc6120000, 15], [0xe0000000, 4], [0xf0000000, 4],
] as const;

function ipv4ToNumber(address: string): number {
  return address.split('.').reduce((sum, octet) => sum * 256 + Number(octet), 0) >>> 0;
}

export function isPrivateAddress(address: string): boolean {
  const host = address.replace(/^\[|\]$/g, '').toLowerCase();
  if (isIP(host) === 4) {
    const value = ipv4ToNumber(host);
    return PRIVATE_V4.some(([prefix, bits]) => (value >>> (32 - bits)) === (prefix >>> (32 - bits)));
  }
  if (isIP(host) === 6) {
    const mapped = host.match(/^::ffff:(\d+\.\d+\.\d+\.\d+)$/);
    if (mapped?.[1]) return isPrivateAddress(mapped[1]);
    return host === '::' || host === '::1' || /^f[cd]/.test(host) || /^fe[89ab]/.test(host) || host.startsWith('ff');
  }
  return false;
}

export function isAllowedClientIdUrl(clientId: string, options: { allowLoopback: boolean }): boolean {
  const url = URL.parse(clientId);
  if (!url || url.protocol !== 'https:') return false;
  const host = url.hostname.toLowerCase();
  const loopbackName = host === 'localhost' || host.endsWith('.localhost');
  if (options.allowLoopback) return true;
  return !loopbackName && !isPrivateAddress(host);
}
