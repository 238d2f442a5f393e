/**
 * The one way tests wait for something that settles asynchronously: poll a
 * condition until it holds, with a deadline and a message saying what was
 * awaited.
 * @module
 */

/** Generous by default: the suite runs in parallel on a shared 2-core machine. */
const DEFAULT_TIMEOUT_MS = 20_000;
const DEFAULT_INTERVAL_MS = 20;

/** How `waitFor` polls and what it says when it gives up. */
export interface WaitOptions {
  /** What is awaited, completing "waiting for ...": `"one-off-1 to exit"`. */
  message: string;
  /** The deadline (default 20 s). */
  timeoutMs?: number;
  /** The pause between two checks (default 20 ms). */
  intervalMs?: number;
  /** What the timeout error shows as last seen (default: the check's last value). */
  seen?: () => unknown;
}

/** A value `waitFor` accepts as "done". */
export type Truthy<T> = Exclude<T, false | 0 | "" | null | undefined>;

/**
 * Polls `check` until it returns a truthy value and resolves with that value.
 * At the deadline throws `Timed out after Nms waiting for <message>`, with
 * the last value seen when there is one worth showing. An error thrown by
 * `check` fails the wait at once.
 */
export async function waitFor<T>(
  check: () => T | Promise<T>,
  options: WaitOptions,
): Promise<Truthy<T>> {
  const timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  const intervalMs = options.intervalMs ?? DEFAULT_INTERVAL_MS;
  const deadline = performance.now() + timeoutMs;
  while (true) {
    const value = await check();
    if (value) return value as Truthy<T>;
    if (performance.now() >= deadline) {
      const seen = options.seen ? options.seen() : value;
      const detail = seen === false || seen === undefined || seen === null
        ? ""
        : `; last seen: ${show(seen)}`;
      throw new Error(`Timed out after ${timeoutMs}ms waiting for ${options.message}${detail}`);
    }
    await new Promise((resolve) => setTimeout(resolve, intervalMs));
  }
}

function show(value: unknown): string {
  try {
    return JSON.stringify(value) ?? String(value);
  } catch {
    return String(value);
  }
}
