/**
 * Which client ID metadata document URLs the gateway fetches at all.
 *
 * oidc-provider already enforces the CIMD rules on the URL (https, a path, no dot segments,
 * no fragment or credentials) and on the fetch (no redirects, 200 only, a size cap, a short
 * timeout, and a connection-time check that the peer is not a special-use address, which
 * pins the resolved address for that request). This check runs first and refuses literal
 * private, loopback and link-local hosts up front, whatever form the URL writes them in
 * (`[::ffff:7f00:1]`, `2130706433`, `localhost`), so they are never even connected to.
 */
import { isIP } from 'node:net';

const PRIVATE_V4 = [
  [0x00000000, 8], [0x0a000000, 8], [0x64400000, 10], [0x7f000000, 8], [0xa9fe0000, 16],
  [0xac100000, 12], [0xc0a80000, 16], [0xc0000000, 24], [0xc6120000, 15], [0xe0000000, 4], [0xf0000000, 4],
] as const;

function ipv4ToNumber(address: string): number {
  return address.split('.').reduce((sum, octet) => sum * 256 + Number(octet), 0) >>> 0;
}

/** The eight 16-bit groups of an IPv6 address (which `isIP` already accepted). */
function ipv6Groups(address: string): number[] {
  let text = address;
  const dotted = text.match(/(\d+\.\d+\.\d+\.\d+)$/)?.[1];
  if (dotted) {
    const value = ipv4ToNumber(dotted);
    text = `${text.slice(0, -dotted.length)}${(value >>> 16).toString(16)}:${(value & 0xffff).toString(16)}`;
  }
  const [head = '', tail] = text.split('::');
  const left = head ? head.split(':') : [];
  const right = tail ? tail.split(':') : [];
  const missing = tail === undefined ? 0 : 8 - left.length - right.length;
  return [...left, ...Array<string>(missing).fill('0'), ...right].map((group) => parseInt(group, 16));
}

/**
 * The IPv4 address inside an IPv4-mapped (::ffff:0:0/96) or NAT64 (64:ff9b::/96) IPv6
 * address. WHATWG URL parsing writes `[::ffff:127.0.0.1]` as `[::ffff:7f00:1]`, so the dotted
 * form cannot be relied on.
 */
function embeddedIPv4(groups: number[]): string | undefined {
  const [a = 0, b = 0, c = 0, d = 0, e = 0, f = 0, g = 0, h = 0] = groups;
  const mapped = a === 0 && b === 0 && c === 0 && d === 0 && e === 0 && f === 0xffff;
  const nat64 = a === 0x64 && b === 0xff9b && c === 0 && d === 0 && e === 0 && f === 0;
  return mapped || nat64 ? [g >>> 8, g & 0xff, h >>> 8, h & 0xff].join('.') : undefined;
}

export function isPrivateAddress(address: string): boolean {
  const host = address.replace(/^\[|\]$/g, '').toLowerCase();
  if (isIP(host) === 4) {
    const value = ipv4ToNumber(host);
    return PRIVATE_V4.some(([prefix, bits]) => (value >>> (32 - bits)) === (prefix >>> (32 - bits)));
  }
  if (isIP(host) === 6) {
    const groups = ipv6Groups(host);
    const v4 = embeddedIPv4(groups);
    if (v4) return isPrivateAddress(v4);
    const first = groups[0] ?? 0;
    const unspecifiedOrLoopback = groups.slice(0, 7).every((group) => group === 0) && (groups[7] ?? 0) <= 1;
    // fc00::/7 unique local, fe80::/10 link-local, ff00::/8 multicast.
    return unspecifiedOrLoopback || (first & 0xfe00) === 0xfc00 || (first & 0xffc0) === 0xfe80 || (first & 0xff00) === 0xff00;
  }
  return false;
}

function isLoopback(host: string): boolean {
  const bare = host.replace(/^\[|\]$/g, '');
  if (bare === 'localhost' || bare.endsWith('.localhost')) return true;
  if (isIP(bare) === 4) return bare.startsWith('127.');
  if (isIP(bare) !== 6) return false;
  const groups = ipv6Groups(bare);
  const v4 = embeddedIPv4(groups);
  if (v4) return v4.startsWith('127.');
  return groups.slice(0, 7).every((group) => group === 0) && groups[7] === 1;
}

/**
 * Whether the gateway may fetch `clientId` as a metadata document. `allowLoopback` (dev mode
 * and tests only, see provider.ts `outgoingFetch`) lets loopback hosts through; other private
 * and link-local hosts stay refused.
 */
export function isAllowedClientIdUrl(clientId: string, options: { allowLoopback: boolean }): boolean {
  const url = URL.parse(clientId);
  if (!url || url.protocol !== 'https:') return false;
  const host = url.hostname.toLowerCase();
  if (isLoopback(host)) return options.allowLoopback;
  return !isPrivateAddress(host);
}
