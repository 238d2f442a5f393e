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

/**
 * A string's length in UTF-8 bytes as SQLite stores it, so that what an
 * insert adds is what a delete's length(CAST(line AS BLOB)) takes off (a
 * RETURNING per inserted line costs much of the insert rate). A lone
 * surrogate is stored as U+FFFD, 3 bytes.
 */
export function utf8Length(text: string): number {
  let n = text.length;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c < 0x80) continue;
    if (c < 0x800) n += 1;
    else if (c >= 0xd800 && c <= 0xdbff && (text.charCodeAt(i + 1) & 0xfc00) === 0xdc00) {
      n += 2, i++; // a pair: 2 UTF-16 units, 4 bytes
    } else n += 2;
  }
  return n;
}
