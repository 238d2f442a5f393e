/**
 * How the dashboard writes times, durations and sizes for people.
 * @module
 */

/** A duration in the largest two units that matter: `850 ms`, `3 min 4 s`, `2 h 5 min`. */
export function duration(ms: number): string {
  if (ms < 1000) return `${Math.max(0, Math.round(ms))} ms`;
  const s = Math.floor(ms / 1000);
  if (s < 60) return ms < 10_000 ? `${(ms / 1000).toFixed(1)} s` : `${s} s`;
  const min = Math.floor(s / 60);
  if (min < 60) return s % 60 ? `${min} min ${s % 60} s` : `${min} min`;
  const h = Math.floor(min / 60);
  if (h < 48) return min % 60 ? `${h} h ${min % 60} min` : `${h} h`;
  return `${Math.floor(h / 24)} d ${h % 24} h`;
}

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

/** A byte count in binary units: `512 B`, `1.5 KiB`, `20 MiB`. */
export function bytes(n: number): string {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let value = n;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) value /= 1024, unit++;
  const shown = unit === 0 || value >= 100
    ? Math.round(value).toString()
    : value.toFixed(1).replace(/\.0$/, "");
  return `${shown} ${units[unit]}`;
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
