/**
 * In-process wake-ups for long polls: a run changed, an app got log lines,
 * a session's recording got a chunk (its watchers read it).
 * @module
 */

/** Waiters keyed by a string, woken by `notify`. */
export class Signals {
  #waiters = new Map<string, Set<() => void>>();

  /** Wakes every waiter of `key`. */
  notify(key: string): void {
    const set = this.#waiters.get(key);
    if (!set) return;
    this.#waiters.delete(key);
    for (const wake of set) wake();
  }

  #closed = false;

  /** True once {@link close} was called: long polls stop waiting. */
  get closed(): boolean {
    return this.#closed;
  }

  /** The server is stopping: every waiter wakes, later waits return at once. */
  close(): void {
    this.#closed = true;
    for (const key of [...this.#waiters.keys()]) this.notify(key);
  }

  /** Resolves true when `key` is notified, false after `timeoutMs`. */
  wait(key: string, timeoutMs: number): Promise<boolean> {
    if (this.#closed) return Promise.resolve(false);
    return new Promise((resolve) => {
      let set = this.#waiters.get(key);
      if (!set) this.#waiters.set(key, set = new Set());
      const done = (woken: boolean) => {
        clearTimeout(timer);
        set.delete(wake);
        if (set.size === 0 && this.#waiters.get(key) === set) this.#waiters.delete(key);
        resolve(woken);
      };
      const wake = () => done(true);
      const timer = setTimeout(() => done(false), timeoutMs);
      set.add(wake);
    });
  }
}

/** Key of a run's changes. */
export function runKey(runId: string): string {
  return `run:${runId}`;
}

/** Key of an app's new log lines. */
export function logKey(appId: number): string {
  return `logs:${appId}`;
}

/** Key of a run's new audit chunks: its watchers read them. */
export function auditKey(runId: string): string {
  return `audit:${runId}`;
}
