/**
 * Wake-ups for long polls: a run changed, an app got log lines, a session's
 * recording got a chunk (its watchers read it). Waiters are in this process;
 * a {@link SignalTransport} carries each notification to the other servers
 * of a cluster too (PostgreSQL NOTIFY, server/cluster/).
 * @module
 */

/** Carries notifications between the servers of one store. */
export interface SignalTransport {
  /** Tells the other servers that `key` changed. */
  publish(key: string): void;
  /** Calls `wake` with each key another server published. */
  subscribe(wake: (key: string) => void): void;
}

/** Bursts of one key coalesce: at most one publish per key per this many ms. */
export const SIGNAL_COALESCE_MS = 10;

/** Waiters keyed by a string, woken by `notify`. */
export class Signals {
  #waiters = new Map<string, Set<() => void>>();
  #listeners = new Map<string, Set<() => void>>();
  #transport: SignalTransport | undefined;
  /** Keys published within the coalescing window: true when another notify came meanwhile. */
  #recent = new Map<string, { again: boolean; timer: ReturnType<typeof setTimeout> }>();

  /** In-process only, unless a transport carries notifications to other servers. */
  constructor(options: { transport?: SignalTransport } = {}) {
    this.#transport = options.transport;
    this.#transport?.subscribe((key) => {
      for (const listener of this.#listeners.get(key) ?? []) listener();
      this.#wake(key);
    });
  }

  /** Wakes every waiter of `key`, here and (through the transport) on other servers. */
  notify(key: string): void {
    this.#wake(key);
    if (this.#transport && !this.#closed) this.#publish(key);
  }

  // 200,000 log lines are a few thousand batches: the first of a burst goes
  // at once, the others of its window become one trailing publish.
  #publish(key: string): void {
    const recent = this.#recent.get(key);
    if (recent) {
      recent.again = true;
      return;
    }
    this.#transport!.publish(key);
    const entry = {
      again: false,
      timer: setTimeout(() => {
        this.#recent.delete(key);
        if (entry.again) this.#publish(key);
      }, SIGNAL_COALESCE_MS),
    };
    this.#recent.set(key, entry);
  }

  #wake(key: string): void {
    const set = this.#waiters.get(key);
    if (!set) return;
    this.#waiters.delete(key);
    for (const wake of set) wake();
  }

  /**
   * Calls `fn` on every notification of `key` by another server, until the
   * returned function is called (this server's own it acts on itself).
   */
  onRemote(key: string, fn: () => void): () => void {
    let set = this.#listeners.get(key);
    if (!set) this.#listeners.set(key, set = new Set());
    set.add(fn);
    return () => set.delete(fn);
  }

  #closed = false;

  /** True once {@link close} was called: long polls stop waiting. */
  get closed(): boolean {
    return this.#closed;
  }

  /** The server is stopping: every waiter wakes, later waits return at once. */
  close(): void {
    this.#closed = true;
    for (const { timer } of this.#recent.values()) clearTimeout(timer);
    this.#recent.clear();
    this.#listeners.clear();
    for (const key of [...this.#waiters.keys()]) this.#wake(key);
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

/** Key of the queue: a run was created or capacity freed; every server places what it can. */
export const QUEUE_KEY = "queue";
