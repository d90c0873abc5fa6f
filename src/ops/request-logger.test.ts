import { Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import type { FastifyBaseLogger } from 'fastify';
import { createLogger } from './logger.ts';
import { RequestLogger, requestLoggerFactory } from './request-logger.ts';

function capture(level = 'info') {
  const lines: string[] = [];
  const destination = new Writable({
    write(chunk: Buffer, _encoding, done) {
      lines.push(...chunk.toString('utf8').split('\n').filter(Boolean));
      done();
    },
  });
  const logger = createLogger({ level, destination });
  // The timestamp differs between two lines; everything else must not.
  const read = () => lines.splice(0).map((line) => line.replace(/"time":"[^"]+"/, '"time":"T"'));
  return { logger, read };
}

describe('RequestLogger', () => {
  it('writes the same line as a pino child with the request id bound', () => {
    const { logger, read } = capture();
    const lazy = new RequestLogger(logger, { reqId: 'req-1' });
    const child = logger.child({ reqId: 'req-1' });
    const boom = new Error('boom');
    const bare = new Error('bare error');
    const calls: Array<(log: Pick<FastifyBaseLogger, 'info' | 'warn' | 'error'>) => void> = [
      (log) => log.info({ req: { method: 'POST', url: '/a/mcp?code=secret' }, res: { statusCode: 200 }, responseTime: 1.5 }, 'request completed'),
      (log) => log.warn({ event: 'access.denied', account: 'acc', access_token: 'tok' }, 'request denied by %s', 'policy'),
      (log) => log.error({ err: boom }, 'unexpected error'),
      (log) => log.error(bare),
      (log) => log.info('a message alone'),
    ];
    for (const call of calls) {
      call(lazy);
      call(child);
      const [fromLazy, fromChild] = read();
      expect(fromLazy).toBeDefined();
      expect(fromLazy).toBe(fromChild);
    }
  });

  it('writes nothing, and makes no child, below the level', () => {
    const { logger, read } = capture('warn');
    let children = 0;
    const counting = Object.create(logger, { child: { value: (...args: Parameters<typeof logger.child>) => (children++, logger.child(...args)) } });
    const lazy = new RequestLogger(counting, { reqId: 'req-2' });
    lazy.info({ a: 1 }, 'dropped');
    lazy.debug('dropped');
    expect(read()).toEqual([]);
    expect(children).toBe(0);
    expect(lazy.isLevelEnabled('warn')).toBe(true);
    expect(lazy.isLevelEnabled('info')).toBe(false);
    lazy.warn({ a: 1 }, 'kept');
    expect(read()).toHaveLength(1);
    expect(children).toBe(0);
  });

  it('follows a level set on it, and makes children that carry its bindings', () => {
    const { logger, read } = capture('warn');
    const lazy = new RequestLogger(logger, { reqId: 'req-3' });
    lazy.level = 'debug';
    expect(lazy.level).toBe('debug');
    lazy.debug({ step: 1 }, 'now written');
    expect(logger.level).toBe('warn');
    lazy.child({ service: 'demo' }).warn('from a child');
    const lines = read().map((line) => JSON.parse(line) as Record<string, unknown>);
    expect(lines).toMatchObject([{ reqId: 'req-3', step: 1, msg: 'now written' }, { reqId: 'req-3', service: 'demo', msg: 'from a child' }]);
    expect(lazy.bindings()).toMatchObject({ name: 'gatehouse', reqId: 'req-3' });
  });

  it('is what the factory gives, unless the route sets its own level', () => {
    const { logger } = capture();
    expect(requestLoggerFactory(logger, { reqId: 'a' }, {})).toBeInstanceOf(RequestLogger);
    expect(requestLoggerFactory(logger, { reqId: 'a' }, { level: 'debug' })).not.toBeInstanceOf(RequestLogger);
  });
});
