import { describe, expect, it } from 'vitest';
import { STYLE_HASH } from '../authz/views/layout.ts';
import { apiSecurityHeaders, formActionSource, securityHeaders } from './security-headers.ts';

function directives(csp: string | undefined): Map<string, string> {
  const map = new Map<string, string>();
  for (const part of (csp ?? '').split('; ')) {
    const [name = '', ...values] = part.split(' ');
    map.set(name, values.join(' '));
  }
  return map;
}

describe('securityHeaders', () => {
  it('allows no script, exactly the page stylesheet, self form posts and no framing', () => {
    const headers = securityHeaders({ styleHash: STYLE_HASH, https: false });
    const csp = directives(headers['Content-Security-Policy']);
    expect(Object.fromEntries(csp)).toEqual({
      'default-src': "'none'",
      'style-src': `'${STYLE_HASH}'`,
      'img-src': "'self' https: data:",
      'form-action': "'self'",
      'frame-ancestors': "'none'",
      'base-uri': "'none'",
    });
    expect(headers).toMatchObject({
      'X-Frame-Options': 'DENY',
      'X-Content-Type-Options': 'nosniff',
      'Referrer-Policy': 'no-referrer',
      'Cross-Origin-Opener-Policy': 'same-origin',
      'Cache-Control': 'no-store',
    });
    expect(headers['Permissions-Policy']).toContain('camera=()');
  });

  it('sends HSTS only over https', () => {
    expect(securityHeaders({ styleHash: STYLE_HASH, https: false })).not.toHaveProperty('Strict-Transport-Security');
    expect(securityHeaders({ styleHash: STYLE_HASH, https: true })['Strict-Transport-Security']).toBe('max-age=31536000');
  });

  it('adds the given form-action targets once each', () => {
    const headers = securityHeaders({
      styleHash: STYLE_HASH,
      https: true,
      formAction: ['https://claude.ai', 'cursor:', 'http://127.0.0.1:33418', 'https://claude.ai'],
    });
    expect(directives(headers['Content-Security-Policy']).get('form-action')).toBe(
      "'self' https://claude.ai cursor: http://127.0.0.1:33418",
    );
  });

  it('refuses anything that could inject or widen the policy', () => {
    const bad = [
      'https://a.example; script-src *',
      "'unsafe-inline'",
      '*',
      'javascript:',
      'data:',
      'https://a.example/path',
      'https://a.example,https://b.example',
      '',
    ];
    for (const source of bad) {
      expect(() => securityHeaders({ styleHash: STYLE_HASH, https: true, formAction: [source] }), source).toThrow(TypeError);
    }
    expect(() => securityHeaders({ styleHash: "x'; script-src *", https: true })).toThrow(TypeError);
  });
});

describe('formActionSource', () => {
  it('maps a redirect URI to the source that allows navigating to it', () => {
    expect(formActionSource('https://claude.ai/api/mcp/auth_callback')).toBe('https://claude.ai');
    expect(formActionSource('HTTPS://VSCode.dev:443/redirect')).toBe('https://vscode.dev');
    expect(formActionSource('http://127.0.0.1:33418/callback?x=1')).toBe('http://127.0.0.1:33418');
    expect(formActionSource('http://localhost/cb')).toBe('http://localhost');
    expect(formActionSource('cursor://anysphere.cursor-retrieval/oauth/callback')).toBe('cursor:');
    expect(formActionSource('vscode://vscode.github-authentication/did-authenticate')).toBe('vscode:');
    expect(formActionSource('com.example.app:/oauth2redirect')).toBe('com.example.app:');
    expect(formActionSource('http://[::1]:8080/cb')).toBe('http:');
  });

  it('gives nothing for unparsable URIs and forbidden schemes', () => {
    expect(formActionSource('not a url')).toBeUndefined();
    expect(formActionSource('javascript:alert(1)')).toBeUndefined();
    expect(formActionSource('data:text/html,hi')).toBeUndefined();
    expect(formActionSource('file:///etc/passwd')).toBeUndefined();
  });

  it('produces sources securityHeaders accepts', () => {
    const sources = ['https://claude.ai/cb', 'cursor://x/cb', 'http://[::1]:1/cb'].map(formActionSource);
    const formAction = sources.filter((s): s is string => s !== undefined);
    expect(() => securityHeaders({ styleHash: STYLE_HASH, https: true, formAction })).not.toThrow();
  });
});

describe('apiSecurityHeaders', () => {
  it('is nosniff and no-store by default; cacheable leaves caching to the caller', () => {
    expect(apiSecurityHeaders()).toMatchObject({ 'X-Content-Type-Options': 'nosniff', 'Cache-Control': 'no-store' });
    const cacheable = apiSecurityHeaders({ cacheable: true });
    expect(cacheable['X-Content-Type-Options']).toBe('nosniff');
    expect(cacheable).not.toHaveProperty('Cache-Control');
  });
});
