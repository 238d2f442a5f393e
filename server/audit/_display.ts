/**
 * Recorded bytes as text: UTF-8 decoded across event boundaries, with every
 * byte that is not part of valid UTF-8 shown as `\xNN`.
 * @module
 */

/** Decodes one direction's byte stream; a character split between events is kept whole. */
export class EscapingDecoder {
  #carry: number[] = [];

  /** Decodes the next bytes; with `stream`, an unfinished sequence at the end waits for more. */
  decode(bytes: Uint8Array, stream = true): string {
    let input: Uint8Array = bytes;
    if (this.#carry.length > 0) {
      input = new Uint8Array(this.#carry.length + bytes.length);
      input.set(this.#carry);
      input.set(bytes, this.#carry.length);
      this.#carry = [];
    }
    let text = "";
    let plainFrom = 0;
    let i = 0;
    const plain = (end: number) => {
      if (end > plainFrom) text += decoder.decode(input.subarray(plainFrom, end));
    };
    while (i < input.length) {
      const length = sequenceLength(input, i);
      if (length > 0) {
        i += length;
        continue;
      }
      plain(i);
      if (length === 0 && stream) {
        this.#carry = [...input.subarray(i)];
        return text;
      }
      // Invalid (or unfinished at the very end): escape one byte and resynchronise.
      text += escapeByte(input[i]!);
      plainFrom = ++i;
    }
    plain(i);
    return text;
  }

  /** Whatever is still waiting, escaped. */
  flush(): string {
    return this.decode(new Uint8Array(0), false);
  }
}

const decoder = new TextDecoder();

/** `\xNN` for one byte. */
export function escapeByte(byte: number): string {
  return `\\x${byte.toString(16).padStart(2, "0")}`;
}

// Length of the valid UTF-8 sequence at `i`; 0 when it is a valid but
// unfinished prefix at the end of the input; -1 when invalid.
function sequenceLength(bytes: Uint8Array, i: number): number {
  const lead = bytes[i]!;
  if (lead < 0x80) return 1;
  let need: number;
  let low = 0x80;
  let high = 0xbf;
  if (lead >= 0xc2 && lead <= 0xdf) need = 1;
  else if (lead >= 0xe0 && lead <= 0xef) {
    need = 2;
    if (lead === 0xe0) low = 0xa0;
    if (lead === 0xed) high = 0x9f;
  } else if (lead >= 0xf0 && lead <= 0xf4) {
    need = 3;
    if (lead === 0xf0) low = 0x90;
    if (lead === 0xf4) high = 0x8f;
  } else {
    return -1;
  }
  for (let k = 1; k <= need; k++) {
    const next = bytes[i + k];
    if (next === undefined) return 0;
    const min = k === 1 ? low : 0x80;
    const max = k === 1 ? high : 0xbf;
    if (next < min || next > max) return -1;
  }
  return need + 1;
}
