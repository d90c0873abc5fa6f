/**
 * The gateway's logger: pino JSON lines, with every place a secret could appear redacted.
 */
import pino, { type Logger } from 'pino';

export const REDACTED_PATHS = [
  'req.headers.authorization',
  'req.headers.cookie',
  'res.headers["set-cookie"]',
  '*.client_secret',
  '*.refresh_token',
  '*.access_token',
  '*.code',
  '*.code_verifier',
  '*.password',
  '*.encryption_key',
];

export function createLogger(options: { level: string; destination?: pino.DestinationStream }): Logger {
  return pino(
    {
      level: options.level,
      redact: { paths: REDACTED_PATHS, censor: '[redacted]' },
      // `name`, not `service`: `service` is the MCP service a line is about (request and audit lines).
      base: { name: 'gatehouse' },
      timestamp: pino.stdTimeFunctions.isoTime,
      serializers: {
        // URLs of OAuth callbacks carry codes and state: log the path only.
        req: (req: { method: string; url: string; id: string }) => ({ id: req.id, method: req.method, path: req.url.split('?')[0] }),
      },
    },
    options.destination,
  );
}

/**
 * Whether redaction leaves a line with only scalar fields as it is: every path has at least two
 * segments, so it names something inside an object, never a top-level string or number.
 */
const SCALARS_NEVER_REDACTED = REDACTED_PATHS.every((path) => (path.match(/[^.[\]]+|\[[^[\]]*?\]/g) ?? []).length >= 2);

/**
 * A child that writes to the same destination without the redaction paths, for lines made only
 * of scalar fields, which redaction leaves as they are (above). pino 10's redactor runs for each
 * field of each line, strings and numbers included, and parses every path again each time:
 * about 15 % of the gateway's CPU per proxied request at level `info`, where every request
 * writes an access line and every tool call an audit line. Should a top-level path ever be
 * added, this is the redacting logger itself.
 */
export function unredactedChild(logger: Logger, bindings: pino.Bindings, options: pino.ChildLoggerOptions = {}): Logger {
  return SCALARS_NEVER_REDACTED ? logger.child(bindings, { ...options, redact: { paths: [] } }) : logger.child(bindings, options);
}

/** Whether a line's fields are all scalars (no object or array), so that unredactedChild may write it. */
export function onlyScalars(fields: Record<string, unknown>): boolean {
  for (const key in fields) {
    const value = fields[key];
    if (typeof value === 'object' && value !== null) return false;
  }
  return true;
}
