import { describe, expect, it } from 'vitest';
import { createAddressList } from './forward-auth.ts';

describe('createAddressList (forward_auth.allowed_ips)', () => {
  it('matches addresses and CIDR ranges of both families, and nothing else', () => {
    const allowed = createAddressList(['127.0.0.1/32', '::1/128', '10.0.0.0/8', '192.168.1.7', 'fd00::/8']);
    expect(['127.0.0.1', '::1', '10.255.0.1', '192.168.1.7', 'fd12::3'].map(allowed)).toEqual([true, true, true, true, true]);
    expect(['127.0.0.2', '11.0.0.1', '192.168.1.8', 'fe80::1', '::2'].map(allowed)).toEqual([false, false, false, false, false]);
  });

  it('matches an IPv4-mapped IPv6 peer (a dual-stack socket) by its IPv4 rules', () => {
    const allowed = createAddressList(['127.0.0.1/32']);
    expect(allowed('::ffff:127.0.0.1')).toBe(true);
    expect(allowed('::ffff:127.0.0.2')).toBe(false);
  });

  it('refuses an unknown peer address and rejects a range that is not one', () => {
    const allowed = createAddressList(['0.0.0.0/0']);
    expect(allowed(undefined)).toBe(false);
    expect(allowed('not-an-address')).toBe(false);
    expect(() => createAddressList(['localhost'])).toThrow(/not an IP address/);
  });
});
