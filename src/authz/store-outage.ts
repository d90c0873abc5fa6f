/**
 * A store outage at oidc-provider's endpoints (/token, /register, /authorize …) is answered
 * 503 with `temporarily_unavailable` and Retry-After, as the gateway's own routes answer it
 * (app.ts), instead of the 500 `server_error` oidc-provider gives any error it did not raise.
 * 503 tells clients the failure is temporary and the request may be retried (RFC 9110
 * §15.6.4); `temporarily_unavailable` is OAuth's name for it (RFC 6749 §4.1.2.1).
 *
 * oidc-provider's per-route error handler catches the error and writes the 500 itself, telling
 * only its `server_error` event which error it was; errors from the gateway's own middleware
 * are thrown past it. This middleware, mounted outermost, sees both and rewrites the answer.
 * Redirects to a client (authorization errors) are left alone: they carry `server_error` to
 * the client, which is still true.
 */
import type Provider from 'oidc-provider';
import type { KoaContextWithOIDC } from 'oidc-provider';
import { StoreUnavailableError } from '../store/index.ts';
import { errorPage } from './views/index.ts';

const RETRY_AFTER_SECONDS = '5';

export function answerStoreOutages(provider: Provider) {
  const outages = new WeakSet<object>();
  provider.on('server_error', (ctx: object, error: unknown) => {
    if (error instanceof StoreUnavailableError) outages.add(ctx);
  });

  return async (ctx: KoaContextWithOIDC, next: () => Promise<void>) => {
    try {
      await next();
    } catch (error) {
      if (!(error instanceof StoreUnavailableError)) throw error;
      outages.add(ctx);
      ctx.status = 500;
    }
    if (!outages.has(ctx) || ctx.status !== 500) return;
    ctx.status = 503;
    ctx.set('retry-after', RETRY_AFTER_SECONDS);
    ctx.set('cache-control', 'no-store');
    if (ctx.type === 'text/html') {
      ctx.body = errorPage({ title: 'Temporarily unavailable', message: 'The gateway cannot reach its storage right now. Try again in a minute.', status: 503 });
    } else {
      ctx.body = { error: 'temporarily_unavailable', error_description: 'the gateway cannot reach its store; try again shortly' };
    }
  };
}
