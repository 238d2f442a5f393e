/**
 * What every benchmark shares: timing a command, medians, the output row,
 * and reading a process's memory from /proc.
 * @module
 */

/** The program's entry, as the CLI and the roles are started. */
export const MAIN = new URL("../main.ts", import.meta.url).pathname;

/** One MiB. */
export const MIB = 2 ** 20;

/** The median of a non-empty list. */
export function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

/** Runs a command to completion; resolves with its wall time in ms, throws if it failed. */
export async function time(
  cmd: string,
  args: string[],
  env?: Record<string, string>,
): Promise<number> {
  const start = performance.now();
  const out = await new Deno.Command(cmd, {
    args,
    stdout: "null",
    stderr: "piped",
    stdin: "null",
    ...(env ? { env } : {}),
  }).output();
  const ms = performance.now() - start;
  if (!out.success) {
    throw new Error(`${cmd} ${args.join(" ")} failed: ${new TextDecoder().decode(out.stderr)}`);
  }
  return ms;
}

/** The median of `n` sequential measurements. */
export async function medianOf(n: number, fn: () => Promise<number>): Promise<number> {
  const values: number[] = [];
  for (let i = 0; i < n; i++) values.push(await fn());
  return median(values);
}

/** One printed result, kept for the Markdown table at the end. */
export interface Result {
  name: string;
  ours: string;
  spread: string;
  baseline: string;
  ratio: string;
  target: string;
}

/** Every row printed so far, in order. */
export const RESULTS: Result[] = [];

/**
 * Prints one result row and keeps it for the table: name, ours, baseline,
 * ratio, target, and the spread of ours over the rounds ("" when one round).
 */
export function row(
  name: string,
  ours: string,
  baseline: string,
  ratio: string,
  target: string,
  spread = "",
): void {
  RESULTS.push({ name, ours, spread, baseline, ratio, target });
  console.log(
    `${name.padEnd(44)} ${ours.padStart(14)} ${spread.padStart(6)} ${baseline.padStart(14)} ${
      ratio.padStart(8)
    }   ${target}`,
  );
}

/** Prints the header row. */
export function header(): void {
  console.log(
    `${"benchmark".padEnd(44)} ${"ours".padStart(14)} ${"spread".padStart(6)} ${
      "baseline".padStart(14)
    } ${"ratio".padStart(8)}   target`,
  );
}

/** The rows printed so far as a Markdown table. */
export function markdownTable(results: readonly Result[] = RESULTS): string {
  const cell = (text: string) => text.replaceAll("|", "\\|");
  const lines = [
    "| benchmark | ours | spread | baseline | ratio | target |",
    "| --- | ---: | ---: | ---: | ---: | --- |",
  ];
  for (const r of results) {
    lines.push(
      `| ${[r.name, r.ours, r.spread, r.baseline, r.ratio, r.target].map(cell).join(" | ")} |`,
    );
  }
  return lines.join("\n");
}

/** The median and range of a series of rounds. */
export interface Stats {
  median: number;
  min: number;
  max: number;
  rounds: number;
}

/** Median and range of a non-empty list. */
export function stats(values: number[]): Stats {
  return {
    median: median(values),
    min: Math.min(...values),
    max: Math.max(...values),
    rounds: values.length,
  };
}

/**
 * Runs `fn` `warmup` times unmeasured, then `n` measured rounds, one after
 * the other; resolves with their median and range.
 */
export async function rounds(
  n: number,
  fn: () => Promise<number>,
  warmup = 1,
): Promise<Stats> {
  for (let i = 0; i < warmup; i++) await fn();
  const values: number[] = [];
  for (let i = 0; i < n; i++) values.push(await fn());
  return stats(values);
}

/** The spread of the rounds as ± half their range over the median ("" for one round). */
export function spread(s: Stats): string {
  if (s.rounds < 2 || s.median === 0) return "";
  return `±${((s.max - s.min) / 2 / Math.abs(s.median) * 100).toFixed(0)}%`;
}

/** Bytes as MiB with one decimal. */
export function mib(bytes: number): string {
  return `${(bytes / MIB).toFixed(1)} MiB`;
}

/** A `kB` field of /proc/PID/status (VmRSS, VmHWM, ...) in bytes. */
export async function procStatus(pid: number, field: "VmRSS" | "VmHWM"): Promise<number> {
  const status = await Deno.readTextFile(`/proc/${pid}/status`);
  const kb = new RegExp(`^${field}:\\s+(\\d+) kB`, "m").exec(status)?.[1];
  if (kb === undefined) throw new Error(`No ${field} in /proc/${pid}/status`);
  return Number(kb) * 1024;
}

/** Resident memory of a process, in bytes. */
export function rssOf(pid: number): Promise<number> {
  return procStatus(pid, "VmRSS");
}

/** The soft limit on open files of a process. */
export async function openFileLimit(pid: number | "self" = "self"): Promise<number> {
  const limits = await Deno.readTextFile(`/proc/${pid}/limits`);
  const soft = /^Max open files\s+(\S+)/m.exec(limits)?.[1];
  return soft === undefined || soft === "unlimited" ? Infinity : Number(soft);
}

/** Resolves after `ms`. */
export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
