/**
 * The CLI's errors, output helpers and argument parsing.
 * @module
 */

/** A mistake in how a command was typed: exit 2 with its usage. */
export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "UsageError";
  }
}

/** A failure to report in one line: exit 1 (or `code`). */
export class CliError extends Error {
  readonly code: number;
  constructor(message: string, code = 1, options?: ErrorOptions) {
    super(message, options);
    this.name = "CliError";
    this.code = code;
  }
}

const encoder = new TextEncoder();

/** Writes text to stdout. */
export function out(text: string): void {
  writeAll(Deno.stdout, encoder.encode(text));
}

/** Writes text to stderr. */
export function err(text: string): void {
  writeAll(Deno.stderr, encoder.encode(text));
}

function writeAll(target: { writeSync(p: Uint8Array): number }, bytes: Uint8Array): void {
  let offset = 0;
  while (offset < bytes.length) offset += target.writeSync(bytes.subarray(offset));
}

/** The app from `-a` or `ONEOFF_APP`, or a usage error. */
export function appName(value: string | undefined): string {
  const app = value ?? Deno.env.get("ONEOFF_APP");
  if (!app) throw new UsageError("Which app? Give -a APP (or set ONEOFF_APP)");
  return app;
}

/** Renders rows as aligned columns. */
export function table(header: string[], rows: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? "").length)));
  const line = (cells: string[]) => cells.map((c, i) => c.padEnd(widths[i]!)).join("  ").trimEnd();
  return [line(header), ...rows.map(line)].join("\n") + "\n";
}

/** "3s", "2m", "4h", "1d" or seconds → milliseconds. */
export function parseDuration(text: string): number {
  const match = /^(\d+)(ms|s|m|h|d)?$/.exec(text.trim());
  if (!match) throw new UsageError(`Invalid duration "${text}": use e.g. 90s, 10m, 2h or 1d`);
  const unit = { ms: 1, s: 1000, m: 60_000, h: 3600_000, d: 86_400_000 }[match[2] ?? "s"]!;
  return Number(match[1]) * unit;
}

/** A short human age: "5s", "3m", "2h", "4d". */
export function age(ms: number): string {
  const s = Math.max(0, Math.round(ms / 1000));
  if (s < 120) return `${s}s`;
  if (s < 7200) return `${Math.round(s / 60)}m`;
  if (s < 172800) return `${Math.round(s / 3600)}h`;
  return `${Math.round(s / 86400)}d`;
}
