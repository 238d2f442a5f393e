/**
 * The server's limits on what a run may ask for: its `--timeout`.
 * @module
 */
import { MAX_TIMER_MS } from "../protocol/mod.ts";
import type { ServerConfig } from "./context.ts";
import { HttpError } from "./http_error.ts";

/** Throws at start-up when a configured duration cannot be a timer's. */
export function checkTimeouts(config: Pick<ServerConfig, "maxTimeoutMs" | "maxDurationMs">): void {
  const settings = { maxTimeoutMs: config.maxTimeoutMs, maxDurationMs: config.maxDurationMs };
  for (const [name, ms] of Object.entries(settings)) {
    if (!Number.isInteger(ms) || ms < 1 || ms > MAX_TIMER_MS) {
      throw new Error(
        `Invalid ${name} "${ms}": give whole milliseconds from 1 to ${MAX_TIMER_MS} (about 24.8 days)`,
      );
    }
  }
}

function shown(ms: number): string {
  return ms % 3600_000 === 0 ? `${ms / 3600_000}h` : `${Math.floor(ms / 1000)}s`;
}

/**
 * The timeout of a run, in ms: what it asked for (`timeout` seconds), or the
 * server's default; 422 when it asks for more than the server's maximum.
 */
export function runTimeoutMs(
  config: Pick<ServerConfig, "maxTimeoutMs" | "maxDurationMs">,
  seconds: number | undefined,
): number {
  if (seconds === undefined) return Math.min(config.maxDurationMs, config.maxTimeoutMs);
  if (!(seconds * 1000 <= config.maxTimeoutMs)) {
    throw new HttpError(
      422,
      "timeout_too_long",
      `Timeout of ${seconds}s is longer than this server's maximum of ${
        shown(config.maxTimeoutMs)
      } (${Math.floor(config.maxTimeoutMs / 1000)}s)`,
    );
  }
  return seconds * 1000;
}
