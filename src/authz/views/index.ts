export { escapeHtml, html, raw, SafeHtml, type HtmlValue } from './html.ts';
export { page, STYLE, STYLE_HASH, type PageOptions } from './layout.ts';
export {
  chooserPage,
  consentPage,
  consentsPage,
  defaultDevPresets,
  deniedPage,
  devSignInPage,
  errorPage,
  signedOutPage,
  withdrawnPage,
  type ConsentOptions,
  type ConsentRecordView,
  type ConsentScope,
  type ConsentsPageOptions,
  type DevSignInOptions,
  type DevUser,
  type ErrorPageOptions,
  type ProviderChoice,
} from './pages.ts';
