/**
 * Durations and byte counts written for people, the same in the CLI and the
 * dashboard.
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

/** A duration as a flag takes it (`--idle-timeout`): the largest unit it is a whole number of, `90s`, `30m`, `2h`, `1d`. */
export function durationFlag(ms: number): string {
  const units: [string, number][] = [["d", 86_400_000], ["h", 3600_000], ["m", 60_000], [
    "s",
    1000,
  ]];
  for (const [unit, size] of units) {
    if (ms > 0 && ms % size === 0) return `${ms / size}${unit}`;
  }
  return `${ms}ms`;
}
