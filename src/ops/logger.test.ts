import { Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { createLogger, onlyScalars, unredactedChild } from './logger.ts';

function capture() {
  const lines: string[] = [];
  const destination = new Writable({
    write(chunk: Buffer, _encoding, done) {
      lines.push(...chunk.toString('utf8').split('\n').filter(Boolean));
      done();
    },
  });
  const logger = createLogger({ level: 'info', destination });
  const read = () => lines.splice(0).map((line) => line.replace(/"time":"[^"]+"/, '"time":"T"'));
  return { logger, read };
}

describe('unredactedChild', () => {
  it('writes a line of scalars exactly as the redacting logger does', () => {
    const { logger, read } = capture();
    const fields = {
      request_id: 'req-1', account: 'acc-1', email: 'ana@example.com', client: 'c-1', service: 'demo', transport: 'streamable-http',
      session: undefined, tool: 'search "quoted" \\ back', rpc_id: 42, outcome: 'ok', error_code: undefined, status: 200, duration_ms: 1.5,
      code: 'top-level names are not redacted paths', password: 'neither is this', flag: true, nothing: null, event: 'tool.called',
    };
    expect(onlyScalars(fields)).toBe(true);
    logger.child({ audit: true }).info(fields, 'tool.called');
    unredactedChild(logger, { audit: true }).info(fields, 'tool.called');
    const [redacted, plain] = read();
    expect(redacted).toBeDefined();
    expect(plain).toBe(redacted);
  });

  it('writes the access line exactly as a request child does', () => {
    const { logger, read } = capture();
    const line = { req: { method: 'GET', url: '/authorize' }, res: { statusCode: 302 }, responseTime: 3.2 };
    logger.child({ reqId: 'req-2' }).info(line, 'request completed');
    unredactedChild(logger, {}).info({ reqId: 'req-2', ...line }, 'request completed');
    const [child, plain] = read();
    expect(plain).toBe(child);
  });

  it('is not for objects: those the redacting logger must see', () => {
    expect(onlyScalars({ a: 1, arguments: { password: 'x' } })).toBe(false);
    expect(onlyScalars({ list: ['a'] })).toBe(false);
    const { logger, read } = capture();
    logger.info({ arguments: { password: 'secret' } }, 'kept redacted');
    expect(read()[0]).toContain('"password":"[redacted]"');
  });
});

describe('audit trail in the main log', () => {
  it('is written at any log.level but silent', async () => {
    const { createAuditLog } = await import('./audit.ts');
    for (const [level, expected] of [['warn', 2], ['error', 2], ['info', 2], ['silent', 0]] as const) {
      const lines: string[] = [];
      const destination = new Writable({ write(chunk, _encoding, done) { lines.push(String(chunk)); done(); } });
      const logger = createLogger({ level, destination });
      const audit = createAuditLog({ logger });
      audit.record('sign_in', { account: 'dev:a@example.com', provider: 'dev' });
      audit.record('tool.called', { service: 'demo', tool: 'add', outcome: 'ok', arguments: { x: 1 } });
      logger.info('not an audit line');
      expect(lines.filter((line) => JSON.parse(line).audit === true), level).toHaveLength(expected);
      expect(lines.some((line) => line.includes('not an audit line'))).toBe(level === 'info');
    }
  });
});
