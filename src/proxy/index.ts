export { forwardRequest, sendJsonRpcError, type ForwardOptions } from './http.ts';
export { clientResponseHeaders, upstreamRequestHeaders, type ForwardedIdentity, type IdentityHeaderNames } from './headers.ts';
