/**
 * Time as a dependency: what reads the time or sets a timer takes a
 * {@link Clock}, so that a test can move time on instead of sleeping it out.
 * @module
 */

/** A timer handle; only meaningful to the clock that made it. */
export type TimerId = number | ReturnType<typeof setTimeout>;

/** The wall clock and timers. */
export interface Clock {
  /** Milliseconds since the epoch. */
  now(): number;
  /** Calls `fn` once after `ms`. */
  setTimeout(fn: () => void, ms: number): TimerId;
  /** Cancels a timeout or an interval; undefined is ignored. */
  clearTimeout(id: TimerId | undefined): void;
  /** Calls `fn` every `ms`. */
  setInterval(fn: () => void, ms: number): TimerId;
  /** Cancels an interval (same as clearTimeout). */
  clearInterval(id: TimerId | undefined): void;
}

/** The real clock: `Date.now` and the global timers. */
export const realClock: Clock = {
  now: () => Date.now(),
  setTimeout: (fn, ms) => setTimeout(fn, ms),
  clearTimeout: (id) => clearTimeout(id as number | undefined),
  setInterval: (fn, ms) => setInterval(fn, ms),
  clearInterval: (id) => clearInterval(id as number | undefined),
};

interface FakeTimer {
  at: number;
  fn: () => void;
  every: number | null;
}

/**
 * A clock that only moves when told to. {@link FakeClock.advance} fires the
 * timers that fall due in order, letting the work each one starts (promises,
 * real I/O) settle before the next fires.
 */
export class FakeClock implements Clock {
  #now: number;
  #next = 1;
  #timers = new Map<TimerId, FakeTimer>();

  /** Starts at `start` (epoch ms; default a fixed date, 2026-01-01). */
  constructor(start = Date.UTC(2026, 0, 1)) {
    this.#now = start;
  }

  now(): number {
    return this.#now;
  }

  setTimeout(fn: () => void, ms: number): TimerId {
    return this.#add(fn, ms, null);
  }

  clearTimeout(id: TimerId | undefined): void {
    if (id !== undefined) this.#timers.delete(id);
  }

  setInterval(fn: () => void, ms: number): TimerId {
    return this.#add(fn, ms, Math.max(1, ms));
  }

  clearInterval(id: TimerId | undefined): void {
    this.clearTimeout(id);
  }

  /** Timers not yet fired (intervals count once). */
  get pending(): number {
    return this.#timers.size;
  }

  /** Moves time on by `ms`, firing every timer due on the way. */
  async advance(ms: number): Promise<void> {
    const target = this.#now + ms;
    await settle();
    while (true) {
      const due = this.#earliest(target);
      if (due === undefined) break;
      const [id, timer] = due;
      this.#now = Math.max(this.#now, timer.at);
      if (timer.every === null) this.#timers.delete(id);
      else timer.at += timer.every;
      timer.fn();
      await settle();
    }
    this.#now = target;
    await settle();
  }

  #add(fn: () => void, ms: number, every: number | null): TimerId {
    const id = this.#next++;
    this.#timers.set(id, { at: this.#now + Math.max(0, ms), fn, every });
    return id;
  }

  #earliest(limit: number): [TimerId, FakeTimer] | undefined {
    let best: [TimerId, FakeTimer] | undefined;
    for (const entry of this.#timers) {
      if (entry[1].at > limit) continue;
      if (best === undefined || entry[1].at < best[1].at) best = entry;
    }
    return best;
  }
}

/** Lets pending promise chains and quick I/O run: a few turns of the real event loop. */
async function settle(): Promise<void> {
  for (let i = 0; i < 5; i++) await new Promise((resolve) => setTimeout(resolve, 0));
}
