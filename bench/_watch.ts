/**
 * `watch`: how long after the session's user a watcher (`oneoff watch`)
 * sees a line of output. A real CLI session runs `cat`; each round writes
 * one numbered line to its stdin and times when it comes out of the user's
 * CLI and out of the watcher's, both read as their bytes arrive. The
 * watcher's path is the recording's: agent recorder (cut every
 * WATCHED_FLUSH_MS while watched) → control channel → encrypted store →
 * wake-up → decrypt → stream.
 * @module
 */
import { WATCHED_FLUSH_MS } from "../protocol/mod.ts";
import type { TestSystem } from "../tests/_system.ts";
import { MAIN, row } from "./_util.ts";

/** A process whose stdout is scanned for markers as it arrives. */
class Reader {
  readonly child: Deno.ChildProcess;
  text = "";
  stderr = "";
  #waiting = new Map<string, (at: number) => void>();

  constructor(args: string[], env: Record<string, string>, stdin: boolean) {
    const child = new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", "--quiet", MAIN, ...args],
      env,
      stdin: stdin ? "piped" : "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    this.child = child;
    this.#read();
    (async () => {
      for await (const t of child.stderr.pipeThrough(new TextDecoderStream())) this.stderr += t;
    })();
  }

  async #read(): Promise<void> {
    for await (const t of this.child.stdout.pipeThrough(new TextDecoderStream())) {
      const at = performance.now();
      this.text += t;
      for (const [marker, resolve] of this.#waiting) {
        if (this.text.includes(marker)) {
          this.#waiting.delete(marker);
          resolve(at);
        }
      }
      // Only the tail can hold a marker not seen yet.
      if (this.text.length > 4096) this.text = this.text.slice(-256);
    }
  }

  /** Resolves with the time `marker` came out (now if it already did). */
  seen(marker: string): Promise<number> {
    if (this.text.includes(marker)) return Promise.resolve(performance.now());
    return new Promise((resolve) => this.#waiting.set(marker, resolve));
  }
}

function percentile(values: number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.ceil(p * sorted.length) - 1)]!;
}

function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) =>
    timer = setTimeout(() => reject(new Error(`Timed out waiting for ${what}`)), ms)
  );
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/** `lines` rounds of one line each, a pause between them so that each is a chunk of its own. */
export async function benchWatch(sys: TestSystem, lines = 200): Promise<void> {
  const env = { ...sys.cliEnv(), NO_COLOR: "1" };
  const user = new Reader(["run", "-a", "demo", "--no-tty", "--", "cat"], env, true);
  const stdin = user.child.stdin.getWriter();
  const encoder = new TextEncoder();
  try {
    await stdin.write(encoder.encode("ready\n"));
    await within(user.seen("ready\n"), 60_000, `the session to start: ${user.stderr}`);
    const label = /Running (one-off-\d+)/.exec(user.stderr)?.[1];
    if (!label) throw new Error(`No run label in: ${user.stderr}`);
    const watcher = new Reader(["watch", "-a", "demo", label], env, false);
    try {
      await within(watcher.seen("ready\n"), 30_000, `the watcher to start: ${watcher.stderr}`);
      const toUser: number[] = [];
      const toWatcher: number[] = [];
      for (let i = 0; i < lines; i++) {
        const marker = `line-${i}-${crypto.randomUUID().slice(0, 8)}\n`;
        const sent = performance.now();
        const seenByUser = user.seen(marker);
        const seenByWatcher = watcher.seen(marker);
        await stdin.write(encoder.encode(marker));
        toUser.push(await within(seenByUser, 10_000, "the user's echo") - sent);
        toWatcher.push(await within(seenByWatcher, 10_000, "the watcher's line") - sent);
        // Beyond a chunk's delay: each line is cut into a chunk of its own.
        await new Promise((resolve) => setTimeout(resolve, 2 * WATCHED_FLUSH_MS + 10));
      }
      const ms = (v: number) => `${v.toFixed(0)} ms`;
      const userMedian = percentile(toUser, 0.5);
      const watcherMedian = percentile(toWatcher, 0.5);
      row(
        `watch: output → watcher, median (${lines} lines)`,
        ms(watcherMedian),
        ms(userMedian),
        `${(watcherMedian - userMedian).toFixed(0)} ms`,
        "≤ 200 ms after the user (#13); baseline: → the user",
      );
      row(
        "  output → watcher, p99",
        ms(percentile(toWatcher, 0.99)),
        ms(percentile(toUser, 0.99)),
        `${(percentile(toWatcher, 0.99) - percentile(toUser, 0.99)).toFixed(0)} ms`,
        `recording cut every ${WATCHED_FLUSH_MS} ms while watched`,
      );
    } finally {
      try {
        watcher.child.kill("SIGKILL");
      } catch { /* ended */ }
      await watcher.child.status;
    }
  } finally {
    await stdin.close().catch(() => {});
    await user.child.status;
  }
}
