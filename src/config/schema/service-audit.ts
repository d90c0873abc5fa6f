import { z } from 'zod';
import { flag, integer, list, wrongType } from './primitives.ts';

/*
 * What a service's tool calls leave in the audit trail (`services.<name>.audit`): every call is
 * recorded (`tool.called`); its arguments only when the service opts in, redacted. How:
 * src/proxy/tool-calls.ts and tool-call-arguments.ts.
 */

/** A key name (`api_key`) or a dotted path from the arguments' root (`connection.password`). */
const argumentKey = z.string().regex(/^[^.\s]+(\.[^.\s]+)*$/, {
  error: 'must be an argument name such as api_key, or a dotted path such as connection.password',
});

export const serviceAudit = z.strictObject(
  {
    tool_arguments: flag().default(false),
    redact: list(argumentKey),
    // The request body's first 64 KiB is all the gateway keeps of it to read calls from.
    max_argument_bytes: integer(16, 65_536).default(4096),
  },
  { error: wrongType('must be a mapping with tool_arguments, redact and max_argument_bytes') },
).prefault({});
