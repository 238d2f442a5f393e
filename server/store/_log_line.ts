/**
 * The one rule both stores apply to a log line before keeping it.
 * @module
 */

/**
 * A line as both stores keep it: NUL replaced with U+FFFD (PostgreSQL text
 * cannot hold NUL and a program's output may), and so is a lone surrogate
 * (the lines travel to the database as JSON, where one is refused), so that
 * both stores give back the same line.
 */
export function storedLine(line: string): string {
  const text = line.isWellFormed() ? line : line.toWellFormed();
  return text.includes("\0") ? text.replaceAll("\0", "\uFFFD") : text;
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
