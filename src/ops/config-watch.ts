/**
 * What makes `gatehouse serve` reload its configuration file: SIGHUP always, and with
 * `reload.watch: true` a change of the file.
 *
 * The file is read and validated first; an invalid one (YAML, schema) is logged with every
 * problem's key path and the configuration in force stays. A valid one goes to the gateway's
 * `reload` (ops/config-reload.ts). A trigger during a reload runs one more reload after it.
 *
 * Watching watches the file's directory, not the file: editors save by writing another file
 * and renaming it over the old one, and a Kubernetes ConfigMap volume swaps a `..data` symlink,
 * both of which replace the inode a file watch would follow. Events are debounced, and a file
 * whose text has not changed is not reloaded.
 */
import { watch, readFileSync, type FSWatcher } from 'node:fs';
import { basename, dirname } from 'node:path';
import type { Logger } from 'pino';
import { ConfigError, parseConfigText, type Config } from '../config/index.ts';

export interface ReloadTarget {
  reload(config: Config, source?: string): Promise<unknown>;
  logger: Logger;
}

export interface ConfigFileReloader {
  /** Reads the file and reloads it; resolves when done, whether it was put in force or refused. */
  reload(reason: string): Promise<void>;
  /** Stops watching. */
  close(): void;
}

export interface ConfigFileReloaderOptions {
  /** Reload when the file changes (`reload.watch`); a reload may turn it on or off. */
  watch: boolean;
  /** Quiet time after the last file event before reading the file. */
  debounceMs?: number | undefined;
}

/** The name a Kubernetes ConfigMap volume swaps to publish new contents. */
const CONFIGMAP_DATA = '..data';

export function createConfigFileReloader(path: string, target: ReloadTarget, options: ConfigFileReloaderOptions): ConfigFileReloader {
  const log = target.logger;
  const name = basename(path);
  let lastText = readText();
  let running: Promise<void> | undefined;
  /** A trigger that came during a reload: one more reload follows it. */
  let pending: string | undefined;
  let watcher: FSWatcher | undefined;
  let timer: NodeJS.Timeout | undefined;

  function readText(): string | undefined {
    try {
      return readFileSync(path, 'utf8');
    } catch {
      return undefined;
    }
  }

  const reloadOnce = async (reason: string): Promise<void> => {
    log.info({ event: 'config.reload_requested', reason, file: path }, 'reloading the configuration file');
    let config: Config;
    try {
      const text = readFileSync(path, 'utf8');
      lastText = text;
      config = parseConfigText(text, { source: path });
    } catch (error) {
      const refusal = error instanceof ConfigError ? error : new ConfigError(path, [{ path: '', message: `cannot read the file: ${(error as Error).message}` }]);
      log.error({ event: 'config.reload_refused', problems: refusal.problems }, `${refusal.format()}\nThe configuration in force stays.`);
      return;
    }
    // The gateway logs why it refused a configuration.
    const applied = await target.reload(config, path).then(() => true, () => false);
    if (applied) watchFile(config.reload.watch);
  };

  const reload = (reason: string): Promise<void> => {
    pending = reason;
    running ??= (async () => {
      for (let next: string | undefined = pending; next !== undefined; next = pending) {
        pending = undefined;
        await reloadOnce(next);
      }
    })().catch((error: unknown) => {
      // A reload must never end the process.
      log.error({ err: error, file: path }, 'reloading the configuration failed; the configuration in force stays');
    }).finally(() => { running = undefined; });
    return running;
  };

  const changed = () => {
    const text = readText();
    // Missing for a moment while it is replaced: the rename's own event follows.
    if (text === undefined || text === lastText) return;
    void reload('file change');
  };

  function watchFile(on: boolean): void {
    if (on && !watcher) {
      watcher = watch(dirname(path), { persistent: false }, (_event, changedName) => {
        if (changedName !== null && changedName !== name && changedName !== CONFIGMAP_DATA) return;
        clearTimeout(timer);
        timer = setTimeout(changed, options.debounceMs ?? 200);
        timer.unref();
      });
      watcher.on('error', (error) => log.error({ err: error, file: path }, 'watching the configuration file failed; SIGHUP still reloads it'));
      log.info({ event: 'config.watching', file: path }, 'reloading the configuration file when it changes');
    } else if (!on && watcher) {
      watcher.close();
      watcher = undefined;
      clearTimeout(timer);
    }
  }

  watchFile(options.watch);
  return {
    reload,
    close: () => watchFile(false),
  };
}

/** `gatehouse serve`: SIGHUP reloads the file, and so does a change of it when `reload.watch` is on. */
export function reloadOnSignal(path: string, target: ReloadTarget, options: ConfigFileReloaderOptions): ConfigFileReloader {
  const reloader = createConfigFileReloader(path, target, options);
  process.on('SIGHUP', () => void reloader.reload('SIGHUP'));
  return reloader;
}
