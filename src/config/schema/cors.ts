import { z } from 'zod';
import { url } from './primitives.ts';

/*
 * CORS for browser-based MCP clients (`cors`): the web origins, besides the gateway's own,
 * whose pages may call the MCP endpoints. Every other browser Origin is refused there (the MCP
 * transport's defence against DNS rebinding), its preflight included. The discovery, metadata
 * and authorization-server endpoints answer any origin, as browser clients need them to.
 */

/** Why a URL is not one exact web origin, or undefined. */
function originProblem(text: string, parsed: URL): string | undefined {
  if (parsed.protocol !== 'https:' && parsed.protocol !== 'http:') return 'must be an http:// or https:// origin such as https://inspector.example.com';
  if (parsed.username !== '' || parsed.password !== '') return 'must not contain a user name or password';
  if (parsed.pathname !== '/' || parsed.search !== '' || parsed.hash !== '' || /[?#]/.test(text)) {
    return `must be an origin only, such as ${parsed.origin}: browsers send no path in Origin`;
  }
  return undefined;
}

/** An origin as browsers send it in `Origin`: lower-case scheme and host, no default port, no slash. */
const origin = z.string()
  .refine((value) => value !== '*', {
    error: 'cannot be "*": the Origin check is the MCP endpoints\' defence against DNS rebinding; list each origin',
  })
  .pipe(url(originProblem, 'https://inspector.example.com'))
  .transform((value) => new URL(value).origin);

export const cors = z.strictObject({
  allowed_origins: z.preprocess(
    // From `${…}` or an override, `https://a.example,https://b.example` is read as a list.
    (value) => (typeof value === 'string' ? value.split(',').map((item) => item.trim()).filter((item) => item !== '') : value),
    z.array(origin),
  ).default(() => []),
});
