/**
 * The one page shell every gateway screen uses: a complete, accessible HTML5 document with an
 * inline stylesheet and no JavaScript. The Content-Security-Policy (`ops/security-headers.ts`)
 * allows no inline style except this exact stylesheet, by its hash, so pages must not use
 * `style="…"` attributes or any other `<style>` element.
 */
import { createHash } from 'node:crypto';
import { html, raw, type SafeHtml } from './html.ts';

/** The stylesheet, emitted verbatim inside `<style>`; `STYLE_HASH` is computed from exactly this text. */
export const STYLE = `
:root{color-scheme:light dark;--bg:#f4f5f7;--card:#fff;--fg:#16181d;--muted:#5d6472;--line:#dfe2e8;--soft:#f6f7f9;--accent:#2f5bea;--accent-hover:#2449c4;--on-accent:#fff;--focus:#2f5bea;--danger:#b42318;--warn-bg:#fff7e6;--warn-line:#f2c46d;--warn-fg:#5c3d00;--err-bg:#fdeeee;--err-line:#eba3a3;--err-fg:#7f1d1d}
@media (prefers-color-scheme:dark){:root{--bg:#0e1014;--card:#171a20;--fg:#e8eaef;--muted:#9ba3b2;--line:#2c313b;--soft:#1e222a;--accent:#7aa2ff;--accent-hover:#9bb8ff;--on-accent:#0b1020;--focus:#9bb8ff;--danger:#ff8a80;--warn-bg:#2b2313;--warn-line:#6b5320;--warn-fg:#f5d99a;--err-bg:#2c1618;--err-line:#6e2d31;--err-fg:#f6b8b8}}
*,*::before,*::after{box-sizing:border-box}
body{margin:0;min-height:100vh;padding:40px 16px 56px;background:var(--bg);color:var(--fg);font:16px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif;-webkit-text-size-adjust:100%}
.brand{display:flex;align-items:center;justify-content:center;gap:8px;margin:0 0 20px;color:var(--muted);font-size:.9375rem;font-weight:600}
.brand svg{width:22px;height:22px;color:var(--accent)}
main{max-width:460px;margin:0 auto;padding:32px;background:var(--card);border:1px solid var(--line);border-radius:14px;box-shadow:0 1px 2px rgb(16 24 40/.04),0 8px 24px rgb(16 24 40/.06)}
h1{margin:0 0 12px;font-size:1.375rem;line-height:1.3;letter-spacing:-.01em;overflow-wrap:anywhere}
h2{margin:24px 0 8px;color:var(--muted);font-size:.8125rem;font-weight:600;letter-spacing:.06em;text-transform:uppercase}
p{margin:0 0 16px}
a{color:var(--accent)}
code{font:.875em/1.4 ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;overflow-wrap:anywhere}
strong{overflow-wrap:anywhere}
.muted{color:var(--muted)}
.hint{display:block;margin-top:4px;color:var(--muted);font-size:.875rem}
.eyebrow{margin:0 0 4px;color:var(--danger);font-size:.8125rem;font-weight:600;letter-spacing:.06em;text-transform:uppercase}
.plain{margin:0 0 16px;padding:0;list-style:none}
.stack>li+li{margin-top:10px}
.rows>li{padding:12px 0;border-top:1px solid var(--line)}
.rows>li:first-child{padding-top:0;border-top:0}
.panel{margin:0 0 16px;padding:14px 16px;background:var(--soft);border:1px solid var(--line);border-radius:10px}
.notice{margin:0 0 16px;padding:12px 14px;background:var(--warn-bg);color:var(--warn-fg);border:1px solid var(--warn-line);border-radius:10px}
.notice.error{background:var(--err-bg);color:var(--err-fg);border-color:var(--err-line)}
.btn{display:flex;align-items:center;justify-content:center;gap:10px;width:100%;min-height:44px;margin:0;padding:10px 16px;background:var(--card);color:var(--fg);border:1px solid var(--line);border-radius:10px;font:inherit;font-weight:600;text-align:center;text-decoration:none;cursor:pointer}
.btn:hover{background:var(--soft)}
.btn img{width:20px;height:20px;flex:none}
.btn-primary{background:var(--accent);color:var(--on-accent);border-color:var(--accent)}
.btn-primary:hover{background:var(--accent-hover);border-color:var(--accent-hover)}
.btn-small{width:auto;min-height:36px;padding:6px 14px;font-size:.875rem}
.btn-preset{flex-direction:column;align-items:flex-start;gap:0;text-align:left;font-weight:400}
.btn-preset strong{font-weight:600}
.actions{display:flex;gap:12px;margin-top:24px}
.actions .btn{flex:1}
.split{display:flex;align-items:center;justify-content:space-between;gap:12px}
.divider{display:flex;align-items:center;gap:12px;margin:24px 0 16px;color:var(--muted);font-size:.875rem}
.divider::before,.divider::after{content:"";flex:1;border-top:1px solid var(--line)}
.field{margin-bottom:16px}
label{display:block;margin-bottom:6px;font-size:.9375rem;font-weight:600}
input:not([type=hidden]){width:100%;min-height:44px;padding:10px 12px;background:var(--card);color:var(--fg);border:1px solid var(--line);border-radius:10px;font:inherit}
:focus-visible{outline:3px solid var(--focus);outline-offset:2px}
input:focus-visible{border-color:var(--focus);outline-offset:0}
form{margin:0}
@media (max-width:480px){body{padding:16px 12px 32px}main{padding:24px 20px;border-radius:12px}}
@media (prefers-reduced-motion:no-preference){.btn{transition:background-color .15s,border-color .15s}}
@media (forced-colors:active){.btn,input:not([type=hidden]),.panel,.notice{border:1px solid CanvasText}}
`;

/** The CSP source allowing exactly `STYLE`: `sha256-` + base64 of its SHA-256 (CSP3 §8.3). */
export const STYLE_HASH = `sha256-${createHash('sha256').update(STYLE, 'utf8').digest('base64')}`;

/** An arch with a doorway: the gateway's mark, decorative only. */
const logo = raw(
  '<svg viewBox="0 0 24 24" width="22" height="22" fill="none" stroke="currentColor" stroke-width="2" ' +
    'stroke-linecap="round" stroke-linejoin="round" aria-hidden="true" focusable="false">' +
    '<path d="M4 21V10a8 8 0 0 1 16 0v11"/><path d="M3 21h18"/><path d="M9 21v-5a3 3 0 0 1 6 0v5"/></svg>',
);

export interface PageOptions {
  /** Plain text: the document title and the page's only `<h1>`. Escaped. */
  title: string;
  /** The page content under the heading, built with `html`. */
  body: SafeHtml;
  /** The HTTP status the page is sent with; 4xx/5xx are shown above the heading ("Error 404"). */
  status?: number;
}

/** Renders a complete HTML document. The caller sends it with `securityHeaders(…)`. */
export function page({ title, body, status }: PageOptions): string {
  const eyebrow = status !== undefined && status >= 400 && html`<p class="eyebrow">Error ${status}</p>`;
  return html`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="color-scheme" content="light dark">
<meta name="referrer" content="no-referrer">
<meta name="robots" content="noindex, nofollow">
<title>${title} · Gatehouse</title>
<link rel="icon" href="data:,">
<style>${raw(STYLE)}</style>
</head>
<body>
<header class="brand">${logo}<span>Gatehouse</span></header>
<main aria-labelledby="page-title">
${eyebrow}<h1 id="page-title">${title}</h1>
${body}
</main>
</body>
</html>
`.value;
}
