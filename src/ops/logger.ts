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
