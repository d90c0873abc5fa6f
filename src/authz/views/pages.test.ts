import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import {
  chooserPage,
  consentPage,
  consentsPage,
  defaultDevPresets,
  deniedPage,
  devSignInPage,
  errorPage,
  escapeHtml,
  html,
  raw,
  SafeHtml,
  signedOutPage,
  STYLE,
  STYLE_HASH,
  withdrawnPage,
  type ConsentOptions,
} from './index.ts';

/** Breaks out of text, of a double-quoted and of a single-quoted attribute if not escaped. */
const evil = `<script>alert(1)</script>"'><img src=x onerror=alert(2)>&`;
const evilEscaped = '&lt;script&gt;alert(1)&lt;/script&gt;&quot;&#39;&gt;&lt;img src=x onerror=alert(2)&gt;&amp;';

function consent(overrides: Partial<ConsentOptions> = {}): string {
  return consentPage({
    action: '/interaction/abc/consent',
    csrfToken: 'tok-123',
    clientName: 'Claude',
    clientId: 'c_1',
    redirectHost: 'claude.ai',
    localhostOnly: false,
    serviceName: 'Calculator',
    serviceUrl: 'https://mcp.example.com/calculator/mcp',
    scopes: [{ name: 'tools.read', description: 'See the tools' }],
    userEmail: 'alice@example.com',
    ...overrides,
  });
}

const allPages = () => ({
  chooser: chooserPage({ providers: [{ id: 'google', name: 'Google', icon: 'https://x/g.svg', href: '/login/google' }] }),
  devSignIn: devSignInPage({ action: '/dev/login', csrfToken: 'tok', error: 'Bad email.', presets: defaultDevPresets }),
  consent: consent({ localhostOnly: true, clientHost: 'example.com' }),
  error: errorPage({ title: 'Something went wrong', message: 'Try again.', status: 500 }),
  denied: deniedPage({ reason: 'Not in an allowed group.', userEmail: 'bob@example.com' }),
  consents: consentsPage({
    csrfToken: 'tok',
    action: '/consents/withdraw',
    userEmail: 'alice@example.com',
    consents: [{ id: 'k1', clientName: 'VS Code', clientId: 'c_2', serviceName: 'Calc', scopes: ['a'], grantedAt: new Date(0) }],
  }),
  consentsEmpty: consentsPage({ csrfToken: 'tok', action: '/w', userEmail: 'a@example.com', consents: [] }),
  signedOut: signedOutPage(),
  withdrawn: withdrawnPage({ clientName: 'VS Code' }),
});

/** Every `<form>` in the page, with its content. */
function forms(page: string): string[] {
  return page.match(/<form\b[\s\S]*?<\/form>/g) ?? [];
}

describe('html', () => {
  it('escapes interpolations and keeps SafeHtml, arrays, and nothing for null/undefined/false', () => {
    const inner = html`<b>${'<i>'}</b>`;
    expect(html`${'a&b'}|${inner}|${[html`<x>`, '<y>']}|${null}${undefined}${false}|${3}`.value).toBe(
      'a&amp;b|<b>&lt;i&gt;</b>|<x>&lt;y&gt;||3',
    );
    expect(escapeHtml(evil)).toBe(evilEscaped);
    expect(String(raw('<hr>'))).toBe('<hr>');
  });

  it('cannot be forged with new SafeHtml', () => {
    expect(() => new SafeHtml('<script>', Symbol('SafeHtml'))).toThrow(TypeError);
  });
});

describe('layout', () => {
  it('carries the stylesheet whose hash is STYLE_HASH', () => {
    const expected = `sha256-${createHash('sha256').update(STYLE).digest('base64')}`;
    expect(STYLE_HASH).toBe(expected);
    for (const page of Object.values(allPages())) expect(page).toContain(`<style>${STYLE}</style>`);
  });

  it('renders a complete accessible document on every page, with no script and no inline style attribute', () => {
    for (const [name, page] of Object.entries(allPages())) {
      expect(page, name).toMatch(/^<!doctype html>\n<html lang="en">/);
      expect(page, name).toContain('<meta name="viewport" content="width=device-width, initial-scale=1">');
      expect(page.match(/<main\b/g), name).toHaveLength(1);
      expect(page.match(/<h1\b/g), name).toHaveLength(1);
      expect(page.match(/<style>/g), name).toHaveLength(1);
      expect(page, name).not.toMatch(/<script|\sstyle=|\son[a-z]+=|javascript:/i);
    }
  });

  it('shows the status of an error page', () => {
    expect(allPages().error).toContain('Error 500');
    expect(allPages().denied).not.toContain('Error ');
  });
});

describe('pages escape everything they interpolate', () => {
  const cases: Record<string, () => string> = {
    chooser: () => chooserPage({ providers: [{ id: evil, name: evil, icon: evil, href: evil }] }),
    devSignIn: () =>
      devSignInPage({
        action: evil,
        csrfToken: evil,
        error: evil,
        presets: [{ email: evil, name: evil, groups: [evil] }],
        values: { email: evil, name: evil, groups: evil },
      }),
    consent: () =>
      consent({
        action: evil,
        csrfToken: evil,
        clientName: evil,
        clientId: evil,
        redirectHost: evil,
        clientHost: evil,
        localhostOnly: true,
        serviceName: evil,
        serviceUrl: evil,
        scopes: [{ name: evil, description: evil }, { name: evil }],
        userEmail: evil,
        userName: evil,
      }),
    consentNoScopes: () => consent({ serviceName: evil, scopes: [] }),
    error: () => errorPage({ title: evil, message: evil, status: 400 }),
    denied: () => deniedPage({ reason: evil, userEmail: evil }),
    consents: () =>
      consentsPage({
        csrfToken: evil,
        action: evil,
        userEmail: evil,
        consents: [{ id: evil, clientName: evil, clientId: evil, serviceName: evil, scopes: [evil], grantedAt: new Date() }],
      }),
    withdrawn: () => withdrawnPage({ clientName: evil }),
  };

  for (const [name, render] of Object.entries(cases)) {
    it(name, () => {
      const page = render();
      expect(page).not.toContain('<script');
      expect(page).not.toContain('<img src=x');
      expect(page).not.toContain(`"'>`);
      expect(page).toContain(evilEscaped);
    });
  }
});

describe('forms', () => {
  it('every form posts and carries the csrf hidden field', () => {
    for (const [name, page] of Object.entries(allPages())) {
      for (const form of forms(page)) {
        expect(form, name).toMatch(/^<form method="post" action="[^"]+">/);
        expect(form, name).toMatch(/<input type="hidden" name="csrf" value="tok(-123)?">/);
      }
    }
    expect(forms(allPages().devSignIn)).toHaveLength(1 + defaultDevPresets.length);
    expect(forms(allPages().consents)).toHaveLength(1);
    expect(forms(allPages().consentsEmpty)).toHaveLength(0);
  });

  it('every visible input has a label bound to it', () => {
    for (const [name, page] of Object.entries(allPages())) {
      const inputs = page.match(/<input\b[^>]*>/g) ?? [];
      for (const input of inputs.filter((i) => !i.includes('type="hidden"'))) {
        const id = /\bid="([^"]+)"/.exec(input)?.[1];
        expect(id, `${name}: ${input}`).toBeDefined();
        expect(page, name).toContain(`<label for="${id}">`);
      }
    }
  });
});

describe('devSignInPage', () => {
  it('warns it is for development, requires an email and offers the presets', () => {
    const page = allPages().devSignIn;
    expect(page).toContain('Development sign-in — not for production');
    expect(page).toMatch(/<input id="dev-email" name="email" type="email" required/);
    expect(page).toContain('<p class="notice error" role="alert">Bad email.</p>');
    expect(page).toContain('<input type="hidden" name="email" value="alice@example.com">');
    expect(page).toContain('<input type="hidden" name="groups" value="sales">');
  });

  it('refills what was typed and has no alert without an error', () => {
    const page = devSignInPage({ action: '/d', csrfToken: 't', presets: [], values: { email: 'x@y.z', groups: 'a, b' } });
    expect(page).toContain('value="x@y.z"');
    expect(page).toContain('value="a, b"');
    expect(page).not.toContain('role="alert"');
    expect(page).not.toContain('sample user');
  });
});

describe('consentPage', () => {
  it('names the client, the redirect host, the service, the scopes and the user', () => {
    const page = consent({ userName: 'Alice' });
    expect(page).toContain('<title>Allow Claude to access Calculator? · Gatehouse</title>');
    expect(page).toContain('After you approve, you will be sent to <strong>claude.ai</strong>');
    expect(page).toContain('https://mcp.example.com/calculator/mcp');
    expect(page).toContain('See the tools');
    expect(page).toContain('<code>tools.read</code>');
    expect(page).toContain('<strong>Alice</strong> <span class="muted">(alice@example.com)</span>');
    expect(page).toContain('is not verified');
  });

  it('shows the client_id host of a metadata-document client', () => {
    const page = consent({ clientId: 'https://app.example.org/client.json', clientHost: 'app.example.org' });
    expect(page).toContain('Published by <strong>app.example.org</strong>');
    expect(page).not.toContain('is not verified');
  });

  it('warns about localhost only when every redirect URI is on localhost', () => {
    expect(consent({ localhostOnly: true })).toContain('This application runs on your computer');
    expect(consent({ localhostOnly: false })).not.toContain('runs on your computer');
  });

  it('says "basic access" when no scope is requested', () => {
    expect(consent({ scopes: [] })).toContain('<li>Basic access to Calculator</li>');
  });

  it('has one form with approve and deny, deny first so Enter does not approve', () => {
    const [form, ...rest] = forms(consent());
    expect(rest).toHaveLength(0);
    const deny = form?.indexOf('name="decision" value="deny"') ?? -1;
    const approve = form?.indexOf('name="decision" value="approve"') ?? -1;
    expect(deny).toBeGreaterThan(0);
    expect(approve).toBeGreaterThan(deny);
  });
});

describe('other pages', () => {
  it('chooser links each provider with a decorative icon', () => {
    const page = chooserPage({
      providers: [
        { id: 'google', name: 'Google', icon: 'https://x/g.svg', href: '/login/google' },
        { id: 'gh', name: 'GitHub', href: '/login/gh' },
      ],
    });
    expect(page).toContain('Sign in to continue');
    expect(page).toContain('href="/login/google"');
    expect(page).toContain('<img src="https://x/g.svg" alt=""');
    expect(page).toContain('Continue with GitHub');
    expect(page.match(/<img\b/g)).toHaveLength(1);
  });

  it('consents lists each consent with a withdraw form, or an empty state', () => {
    const { consents, consentsEmpty } = allPages();
    expect(consents).toContain('<input type="hidden" name="consent" value="k1">');
    expect(consents).toContain('aria-label="Withdraw access for VS Code"');
    expect(consents).toContain('<time datetime="1970-01-01T00:00:00.000Z">Jan 1, 1970</time>');
    expect(consentsEmpty).toContain("You haven't approved any applications yet.");
  });

  it('denied, signed-out and withdrawn pages say what happened', () => {
    const { denied, signedOut, withdrawn } = allPages();
    expect(denied).toContain("You don&#39;t have access");
    expect(denied).toContain('Not in an allowed group.');
    expect(signedOut).toContain('You&#39;re signed out');
    expect(withdrawn).toContain('<strong>VS Code</strong> can no longer act for you');
  });
});
