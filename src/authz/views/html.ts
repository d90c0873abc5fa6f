/**
 * A tiny HTML builder: the `html` tagged template escapes every interpolated value unless it
 * is a `SafeHtml`, and only `html` itself (or `raw`, for constants) can make a `SafeHtml`.
 * So a page built from `html` fragments cannot carry unescaped text from a client, a user or
 * an identity provider, however it is composed.
 *
 * Templates must quote every attribute value (`href="${url}"`): escaping covers text and
 * quoted attributes, not unquoted ones, `<script>`, `<style>` or URL schemes.
 */

/** Only this module holds the key, so `new SafeHtml(…)` elsewhere throws. */
const mintKey = Symbol('SafeHtml');

/** Markup that is already safe to emit as is. Produced only by `html` and `raw`. */
export class SafeHtml {
  readonly value: string;

  constructor(value: string, key: symbol) {
    if (key !== mintKey) throw new TypeError('SafeHtml is produced by html`…` or raw() only');
    this.value = value;
  }

  toString(): string {
    return this.value;
  }
}

/**
 * What may be interpolated: text and numbers (escaped), `SafeHtml` (kept), arrays of these
 * (concatenated), and `null`, `undefined` or `false` (nothing, so `cond && html\`…\`` works).
 * Anything else is a type error, which keeps `[object Object]` and `Date#toString` out of pages.
 */
export type HtmlValue = SafeHtml | string | number | null | undefined | false | readonly HtmlValue[];

const entities: Record<string, string> = {
  '&': '&amp;',
  '<': '&lt;',
  '>': '&gt;',
  '"': '&quot;',
  "'": '&#39;',
};

/** Escapes text for an HTML text node or a quoted attribute value. */
export function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (ch) => entities[ch] ?? ch);
}

function render(value: HtmlValue): string {
  if (value === null || value === undefined || value === false) return '';
  if (value instanceof SafeHtml) return value.value;
  if (Array.isArray(value)) return value.map(render).join('');
  return escapeHtml(String(value));
}

/** The tagged template: literal parts kept, every interpolation escaped unless `SafeHtml`. */
export function html(strings: TemplateStringsArray, ...values: readonly HtmlValue[]): SafeHtml {
  let out = strings[0] ?? '';
  for (let i = 0; i < values.length; i += 1) {
    out += render(values[i]) + (strings[i + 1] ?? '');
  }
  return new SafeHtml(out, mintKey);
}

/**
 * Marks a string as safe without escaping it. For constants written in this codebase only
 * (a stylesheet, an inline icon); never for anything that came from a request, a client, a
 * user, an identity provider or the configuration file.
 */
export function raw(constant: string): SafeHtml {
  return new SafeHtml(constant, mintKey);
}
