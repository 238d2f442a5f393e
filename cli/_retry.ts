/**
 * Retrying what is safe to retry: idempotent GETs and the keyed
 * `POST /runs`. A transient failure (the server restarting, a proxy's 502,
 * a dropped connection) is retried with backoff, said once on stderr, and
 * given up on after a bound.
 * @module
 */
import { err } from "./_io.ts";

/** How long a command keeps retrying by default before it fails. */
export const DEFAULT_RETRY_MS = 30_000;
/** How long `oneoff run` keeps asking for the run's outcome: the exit code is worth waiting for. */
export const OUTCOME_RETRY_MS = 10 * 60_000;
/** The first pause between two tries; it doubles up to {@link MAX_BACKOFF_MS}. */
export const FIRST_BACKOFF_MS = 250;
/** The longest pause between two tries. */
export const MAX_BACKOFF_MS = 5_000;

/** HTTP statuses a proxy or a restarting server answers for a moment. */
const TRANSIENT_STATUSES = new Set([502, 503, 504]);

/** A failure worth another try; `reason` is what the retry line says. */
export class TransientError extends Error {
  constructor(readonly reason: string, options?: ErrorOptions) {
    super(reason, options);
    this.name = "TransientError";
  }
}

/** Whether an HTTP status is one to retry. */
export function isTransientStatus(status: number): boolean {
  return TRANSIENT_STATUSES.has(status);
}

/** A short reason for a failed fetch: "connection refused", "connection reset", ... */
export function networkReason(e: unknown): string {
  const text = e instanceof Error ? `${e.message} ${String(e.cause ?? "")}` : String(e);
  if (e instanceof DOMException && e.name === "TimeoutError") return "no answer in time";
  if (/connection refused/i.test(text)) return "connection refused";
  if (/reset|broken pipe|connection closed|incomplete message|unexpected eof/i.test(text)) {
    return "connection reset";
  }
  if (/timed? ?out/i.test(text)) return "no answer in time";
  return e instanceof Error ? e.message : String(e);
}

/** Whether a failed fetch can go better on another try (not a refusal by Deno itself, as of port 1). */
export function isTransientNetworkError(e: unknown): boolean {
  return !(e instanceof Error && /requests to port \d+ are blocked|invalid url/i.test(e.message));
}

/** How {@link retrying} retries. */
export interface RetryOptions {
  /** Give up this long after the first failure (default {@link DEFAULT_RETRY_MS}). */
  forMs?: number;
  /** Say nothing on stderr (`--silent`). */
  quiet?: boolean;
}

// Said once per process, however many requests retry.
let said = false;

/**
 * Calls `attempt` until it returns, retrying a {@link TransientError} with
 * backoff (250 ms doubling to 5 s) for `forMs` after the first failure;
 * the first retry says `oneoff: lost the server (REASON), retrying…` once
 * per process. Other errors, and the last transient one, are thrown.
 */
export async function retrying<T>(
  attempt: () => Promise<T>,
  options: RetryOptions = {},
): Promise<T> {
  const forMs = options.forMs ?? DEFAULT_RETRY_MS;
  let giveUpAt: number | undefined;
  let pause = FIRST_BACKOFF_MS;
  while (true) {
    try {
      return await attempt();
    } catch (e) {
      if (!(e instanceof TransientError)) throw e;
      const now = Date.now();
      giveUpAt ??= now + forMs;
      const left = giveUpAt - now;
      if (left <= 0) throw e;
      if (!said && !options.quiet) {
        said = true;
        err(`oneoff: lost the server (${e.reason}), retrying…\n`);
      }
      await new Promise((resolve) => setTimeout(resolve, Math.min(pause, left)));
      pause = Math.min(pause * 2, MAX_BACKOFF_MS);
    }
  }
}
