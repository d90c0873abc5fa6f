/**
 * A circuit breaker per upstream: after `failures` consecutive failed attempts the circuit
 * opens, and requests get an immediate 503 instead of piling up on a server that is down.
 * After `openSeconds` one request (the probe) is let through (half-open); while it is under
 * way every other request still gets the 503. The probe's success closes the circuit; its
 * failure opens it again for twice as long as before, at most `maxOpenSeconds`.
 *
 * A failure is the upstream not answering at all (connection refused or reset, a headers
 * timeout) or answering 502, 503 or 504 (a proxy in front of it, or the server itself, saying
 * it cannot serve). Any other answer, 500 included, is a server that is up and talking: a
 * success for the breaker, whatever it means for the request.
 */

export type CircuitState = 'closed' | 'open' | 'half_open';

export interface CircuitBreakerOptions {
  /** Consecutive failures that open the circuit. */
  failures: number;
  /** How long the circuit stays open the first time, before a probe. */
  openSeconds: number;
  /** The longest it stays open after failed probes (the wait doubles each time). */
  maxOpenSeconds: number;
}

export interface BreakerLog {
  warn(details: object, message: string): void;
  info(details: object, message: string): void;
}

export type StateChange = (service: string, state: CircuitState, detail: { failures: number; openSeconds?: number }) => void;

/** Statuses that mean "the server cannot serve now" rather than an answer from a working server. */
export function isFailureStatus(status: number): boolean {
  return status === 502 || status === 503 || status === 504;
}

export class CircuitBreaker {
  readonly service: string;
  readonly options: Readonly<CircuitBreakerOptions>;
  #state: CircuitState = 'closed';
  #failures = 0;
  #openMs = 0;
  /** When an open circuit lets its next probe through (ms since the epoch). */
  #probeAt = 0;
  /** When the probe under way was let through: a probe that never reports frees its slot after a while. */
  #probeStarted = 0;
  #onStateChange: StateChange | undefined;

  constructor(service: string, options: CircuitBreakerOptions, onStateChange?: StateChange) {
    this.service = service;
    this.options = { ...options };
    this.#onStateChange = onStateChange;
  }

  get state(): CircuitState {
    return this.#state;
  }

  /**
   * Whether a request may go to the upstream now. Closed: yes. Open: no until the cool-down
   * has passed; then this caller becomes the probe (half-open). Half-open: no, unless the
   * probe has been silent for longer than a cool-down (its caller vanished without a verdict).
   * A caller that was admitted must report `succeeded`, `failed` or `released` exactly once.
   */
  admit(now = Date.now()): boolean {
    if (this.#state === 'closed') return true;
    if (this.#state === 'open') {
      if (now < this.#probeAt) return false;
      this.#probeStarted = now;
      this.#change('half_open');
      return true;
    }
    if (now - this.#probeStarted < this.#openMs) return false;
    this.#probeStarted = now;
    return true;
  }

  /** Whole seconds until an open circuit lets a probe through (at least 1), for `Retry-After`. */
  retryAfterSeconds(now = Date.now()): number {
    const until = this.#state === 'half_open' ? this.#probeStarted + this.#openMs : this.#probeAt;
    return Math.max(1, Math.ceil((until - now) / 1000));
  }

  /** The upstream answered: the circuit closes and the failure count starts again. */
  succeeded(): void {
    this.#failures = 0;
    if (this.#state === 'closed') return;
    this.#openMs = 0;
    this.#change('closed');
  }

  /** The upstream did not answer, or answered 502/503/504. */
  failed(now = Date.now()): void {
    this.#failures++;
    if (this.#state === 'half_open') {
      this.#open(Math.min(this.#openMs * 2, this.options.maxOpenSeconds * 1000), now);
    } else if (this.#state === 'closed' && this.#failures >= this.options.failures) {
      this.#open(this.options.openSeconds * 1000, now);
    }
  }

  /** An admitted request ended without telling anything about the upstream (the client left, its body was too large). */
  released(): void {
    // A probe without a verdict: the next request probes at once. The circuit stays half-open
    // (no state change to log or report: it was never decided).
    if (this.#state === 'half_open') this.#probeStarted = 0;
  }

  #open(ms: number, now: number): void {
    this.#openMs = ms;
    this.#probeAt = now + ms;
    this.#change('open');
  }

  #change(state: CircuitState): void {
    if (this.#state === state) return;
    this.#state = state;
    this.#onStateChange?.(this.service, state, state === 'open' ? { failures: this.#failures, openSeconds: this.#openMs / 1000 } : { failures: this.#failures });
  }
}

/**
 * The breakers of every service, kept by service name. A configuration reload asks again for
 * each service: one whose upstream and breaker settings did not change keeps its breaker and state.
 */
export class CircuitBreakers {
  #breakers = new Map<string, { upstream: string; breaker: CircuitBreaker }>();
  #onStateChange: StateChange;
  /** The metrics only: a new breaker's state is reported, not logged. */
  #report: StateChange | undefined;

  /** Each state change is logged (opening as a warning) and passed to `onStateChange` (metrics). */
  constructor(options: { log?: BreakerLog | undefined; onStateChange?: StateChange | undefined } = {}) {
    const { log, onStateChange } = options;
    this.#report = onStateChange;
    this.#onStateChange = (service, state, detail) => {
      if (state === 'open') log?.warn({ event: 'circuit.open', service, failures: detail.failures, open_seconds: detail.openSeconds }, `circuit opened: ${service} is failing; requests get 503 for ${detail.openSeconds} s`);
      else log?.info({ event: `circuit.${state}`, service }, state === 'closed' ? `circuit closed: ${service} answers again` : `circuit half-open: probing ${service}`);
      onStateChange?.(service, state, detail);
    };
  }

  /** The breaker for `service` at `upstream`, or undefined when its circuit breaker is turned off. */
  for(service: string, upstream: string, options: CircuitBreakerOptions | null | undefined): CircuitBreaker | undefined {
    // A breaker replaced (or removed) by a reload takes its state with it: report the new state,
    // or a replaced open breaker would stay "open" in gatehouse_circuit_state until the next change.
    if (!options) {
      if (this.#breakers.delete(service)) this.#report?.(service, 'closed', { failures: 0 });
      return undefined;
    }
    const existing = this.#breakers.get(service);
    if (existing && existing.upstream === upstream && sameOptions(existing.breaker.options, options)) return existing.breaker;
    const breaker = new CircuitBreaker(service, options, this.#onStateChange);
    this.#breakers.set(service, { upstream, breaker });
    this.#report?.(service, 'closed', { failures: 0 });
    return breaker;
  }
}

function sameOptions(a: CircuitBreakerOptions, b: CircuitBreakerOptions): boolean {
  return a.failures === b.failures && a.openSeconds === b.openSeconds && a.maxOpenSeconds === b.maxOpenSeconds;
}
