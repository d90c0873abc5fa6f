/**
 * The screens people see while signing in through the gateway. Each renderer is a pure
 * function from already-checked, user-safe data to a complete HTML document; the caller picks
 * the HTTP status and sends `securityHeaders(…)`. No page has JavaScript: every action is a
 * link or a plain form post, and every form post carries the CSRF token (`ops/csrf.ts`).
 */
import { html, type SafeHtml } from './html.ts';
import { page } from './layout.ts';

/** The hidden field every form carries; the handler checks it with `verifyCsrfToken`. */
function csrfField(csrfToken: string): SafeHtml {
  return html`<input type="hidden" name="csrf" value="${csrfToken}">`;
}

/** "Ada Lovelace (ada@example.com)", or the email alone when there is no name. */
function who(email: string, name?: string): SafeHtml {
  return name ? html`<strong>${name}</strong> <span class="muted">(${email})</span>` : html`<strong>${email}</strong>`;
}

export interface ProviderChoice {
  id: string;
  name: string;
  /** An image URL (https or data:), shown decoratively beside the name. */
  icon?: string;
  /** Where signing in with this provider starts. */
  href: string;
}

/** Shown when several identity providers are configured. */
export function chooserPage({ providers }: { providers: readonly ProviderChoice[] }): string {
  const items = providers.map(
    (p) => html`<li><a class="btn" href="${p.href}" data-provider="${p.id}">${p.icon && html`<img src="${p.icon}" alt="" width="20" height="20">`}<span>Continue with ${p.name}</span></a></li>`,
  );
  return page({
    title: 'Sign in to continue',
    body: html`<p class="muted">Choose how you want to sign in.</p>
<ul class="plain stack" role="list">${items}</ul>`,
  });
}

export interface DevUser {
  email: string;
  name: string;
  groups: readonly string[];
}

/** Made-up users offered as one-click sign-ins by the embedded dev identity provider. */
export const defaultDevPresets: readonly DevUser[] = [
  { email: 'alice@example.com', name: 'Alice Example', groups: ['eng'] },
  { email: 'bob@example.com', name: 'Bob Example', groups: ['sales'] },
];

export interface DevSignInOptions {
  /** Where the form posts (same origin). */
  action: string;
  csrfToken: string;
  /** A user-safe sentence, e.g. "Enter a valid email address." */
  error?: string;
  presets: readonly DevUser[];
  /** What the user typed, to refill the form after an error. */
  values?: { email?: string; name?: string; groups?: string };
}

/** The embedded dev identity provider's sign-in form (`gatehouse dev` only). */
export function devSignInPage({ action, csrfToken, error, presets, values = {} }: DevSignInOptions): string {
  const presetForms = presets.map(
    (u) => html`<li><form method="post" action="${action}">${csrfField(csrfToken)}
<input type="hidden" name="email" value="${u.email}">
<input type="hidden" name="name" value="${u.name}">
<input type="hidden" name="groups" value="${u.groups.join(', ')}">
<button class="btn btn-preset" type="submit"><strong>Sign in as ${u.name}</strong><span class="muted">${u.email}${u.groups.length > 0 && html` · groups: ${u.groups.join(', ')}`}</span></button>
</form></li>`,
  );
  return page({
    title: 'Sign in',
    body: html`<p class="notice" role="note"><strong>Development sign-in — not for production.</strong> Anyone can sign in here as anyone; no password is checked.</p>
${error && html`<p class="notice error" role="alert">${error}</p>`}
<form method="post" action="${action}">${csrfField(csrfToken)}
<div class="field"><label for="dev-email">Email</label>
<input id="dev-email" name="email" type="email" required autocomplete="email" spellcheck="false" value="${values.email ?? ''}"${error ? html` aria-invalid="true"` : ''}></div>
<div class="field"><label for="dev-name">Name <span class="muted">(optional)</span></label>
<input id="dev-name" name="name" type="text" autocomplete="name" value="${values.name ?? ''}"></div>
<div class="field"><label for="dev-groups">Groups <span class="muted">(optional)</span></label>
<input id="dev-groups" name="groups" type="text" autocomplete="off" spellcheck="false" aria-describedby="dev-groups-hint" value="${values.groups ?? ''}">
<span class="hint" id="dev-groups-hint">Comma separated, e.g. eng, admins</span></div>
<button class="btn btn-primary" type="submit">Sign in</button>
</form>
${presets.length > 0 && html`<p class="divider">or use a sample user</p>
<ul class="plain stack" role="list">${presetForms}</ul>`}`,
  });
}

export interface ConsentScope {
  name: string;
  description?: string;
}

export interface ConsentOptions {
  /** Where the form posts (same origin). */
  action: string;
  csrfToken: string;
  /** Self-asserted by the client, so shown as a claim, never as a verified identity. */
  clientName: string;
  clientId: string;
  /** Host (or scheme, for an app link) of the redirect URI the code will be sent to. */
  redirectHost: string;
  /** Host of `clientId` when it is a URL (a Client ID Metadata Document). */
  clientHost?: string;
  /** Every redirect URI of the client is on a loopback address. */
  localhostOnly: boolean;
  serviceName: string;
  serviceUrl: string;
  scopes: readonly ConsentScope[];
  userEmail: string;
  userName?: string;
}

/** Asks the signed-in user whether this client may act for them on this service. */
export function consentPage(o: ConsentOptions): string {
  const client = o.clientHost
    ? html`<strong>${o.clientName}</strong>
<span class="hint">Published by <strong>${o.clientHost}</strong> · <code>${o.clientId}</code></span>`
    : html`<strong>${o.clientName}</strong>
<span class="hint">This application registered itself; its name is not verified. Client ID <code>${o.clientId}</code></span>`;
  const scopes =
    o.scopes.length > 0
      ? o.scopes.map((s) =>
          s.description
            ? html`<li>${s.description} <span class="hint"><code>${s.name}</code></span></li>`
            : html`<li><code>${s.name}</code></li>`,
        )
      : html`<li>Basic access to ${o.serviceName}</li>`;
  return page({
    title: `Allow ${o.clientName} to access ${o.serviceName}?`,
    body: html`<p class="muted">Signed in as ${who(o.userEmail, o.userName)}</p>
${o.localhostOnly && html`<p class="notice" role="note"><strong>This application runs on your computer.</strong> Only approve if you started it yourself just now.</p>`}
<h2>Application</h2>
<div class="panel">${client}</div>
<h2>Service</h2>
<p><strong>${o.serviceName}</strong><span class="hint"><code>${o.serviceUrl}</code></span></p>
<h2>It will be able to</h2>
<ul class="plain rows" role="list">${scopes}</ul>
<p class="panel">After you approve, you will be sent to <strong>${o.redirectHost}</strong></p>
<form method="post" action="${o.action}">${csrfField(o.csrfToken)}
<div class="actions">
<button class="btn" type="submit" name="decision" value="deny">Deny</button>
<button class="btn btn-primary" type="submit" name="decision" value="approve">Approve</button>
</div>
</form>`,
  });
}

export interface ErrorPageOptions {
  title: string;
  /** A user-safe sentence; never an internal error message. Escaped. */
  message: string;
  status: number;
}

/** A dead end that explains itself without leaking internals. */
export function errorPage({ title, message, status }: ErrorPageOptions): string {
  return page({
    title,
    status,
    body: html`<p>${message}</p>
<p class="muted">You can close this window and start again from your application.</p>`,
  });
}

/** Policy refused this user: for this service, or for the gateway as a whole. */
export function deniedPage({ reason, userEmail, returnTo }: { reason: string; userEmail?: string | undefined; returnTo?: string | undefined }): string {
  return page({
    title: "You don't have access",
    body: html`<p>${reason}</p>
${userEmail && html`<p class="muted">Signed in as <strong>${userEmail}</strong>.</p>`}
<p class="muted">If you think this is a mistake, ask the person who runs this gateway to grant you access.</p>
${returnTo && html`<p><a class="button" href="${returnTo}">Return to the application</a></p>`}`,
  });
}

export interface ConsentRecordView {
  id: string;
  clientName: string;
  clientId: string;
  serviceName: string;
  scopes: readonly string[];
  grantedAt: Date;
}

export interface ConsentsPageOptions {
  csrfToken: string;
  /** Where each "Withdraw" form posts (same origin). */
  action: string;
  consents: readonly ConsentRecordView[];
  userEmail: string;
}

const dateFormat = new Intl.DateTimeFormat('en', { dateStyle: 'medium', timeZone: 'UTC' });

/** The applications this user has approved, each with a way to withdraw it. */
export function consentsPage({ csrfToken, action, consents, userEmail }: ConsentsPageOptions): string {
  const rows = consents.map(
    (c) => html`<li class="split"><div><strong>${c.clientName}</strong>
<span class="hint">${c.serviceName}${c.scopes.length > 0 && html` · ${c.scopes.join(', ')}`}</span>
<span class="hint">Approved <time datetime="${c.grantedAt.toISOString()}">${dateFormat.format(c.grantedAt)}</time> · <code>${c.clientId}</code></span></div>
<form method="post" action="${action}">${csrfField(csrfToken)}
<input type="hidden" name="consent" value="${c.id}">
<button class="btn btn-small" type="submit" aria-label="Withdraw access for ${c.clientName}">Withdraw</button>
</form></li>`,
  );
  return page({
    title: 'Connected applications',
    body: html`<p class="muted">Signed in as <strong>${userEmail}</strong></p>
${
  consents.length > 0
    ? html`<p>These applications can act for you. Withdraw one to stop it; it will have to ask for your approval again.</p>
<ul class="plain rows" role="list">${rows}</ul>`
    : html`<p class="panel">You haven't approved any applications yet.</p>`
}`,
  });
}

/** After signing out of the gateway. */
export function signedOutPage(): string {
  return page({
    title: "You're signed out",
    body: html`<p class="muted">You can close this window.</p>`,
  });
}

/** After a consent was withdrawn. */
export function withdrawnPage({ clientName }: { clientName: string }): string {
  return page({
    title: 'Access withdrawn',
    body: html`<p><strong>${clientName}</strong> can no longer act for you. It will have to ask for your approval again before it can connect.</p>`,
  });
}
