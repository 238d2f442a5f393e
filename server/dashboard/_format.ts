/**
 * How the dashboard writes moments and reads cursors; durations and sizes,
 * which the CLI writes too, are in `util/format.ts`.
 * @module
 */

/** How long ago a moment was: `just now`, `5 min ago`, `3 h ago`, then the date. */
export function ago(at: Date, now: number = Date.now()): string {
  const s = Math.floor((now - at.getTime()) / 1000);
  if (s < 5) return "just now";
  if (s < 60) return `${s} s ago`;
  if (s < 3600) return `${Math.floor(s / 60)} min ago`;
  if (s < 48 * 3600) return `${Math.floor(s / 3600)} h ago`;
  if (s < 30 * 86400) return `${Math.floor(s / 86400)} d ago`;
  return at.toISOString().slice(0, 10);
}

/** A moment in UTC, to the second: `2025-01-02 13:04:05 UTC`. */
export function utc(at: Date): string {
  return `${at.toISOString().slice(0, 19).replace("T", " ")} UTC`;
}

/** How long a run ran (or has been running); null before it started. */
export function runDuration(
  run: { started_at: Date | null; ended_at: Date | null },
  now: number = Date.now(),
): number | null {
  if (!run.started_at) return null;
  return (run.ended_at?.getTime() ?? now) - run.started_at.getTime();
}

/** A query string cursor: a positive integer, or undefined when absent or invalid. */
export function cursor(raw: string | undefined): number | undefined {
  if (raw === undefined || !/^\d{1,15}$/.test(raw)) return undefined;
  const value = Number(raw);
  return value > 0 ? value : undefined;
}
