/**
 * The one rule both stores apply to a log line before keeping it.
 * @module
 */

/**
 * Replaces NUL characters with U+FFFD: PostgreSQL text cannot hold NUL and
 * a program's output may, and both stores must give back the same line.
 */
export function withoutNul(line: string): string {
  return line.includes("\0") ? line.replaceAll("\0", "\uFFFD") : line;
}
