/**
 * A plain-text transcript of a session: the output as a terminal showed it,
 * line by line (carriage returns, backspaces and line erasing applied,
 * other escape sequences dropped), with each line of input on a line of its
 * own marked `⟩ `: under the output line it was typed on when a terminal
 * echoed it, else where it was sent. Only printable text leaves here, so
 * printing a transcript cannot drive the reader's terminal.
 * @module
 */
import { escapeByte } from "./_display.ts";

/** The mark in front of input (and resize) lines. */
export const INPUT_MARK = "⟩ ";

// Characters of one transcript line at most; the rest goes on the next.
const MAX_LINE = 64 * 1024;

type Parse = "text" | "esc" | "charset" | "csi" | "string" | "string_esc";

/** Builds a transcript from decoded output and input text, in event order. */
export class Transcript {
  #echo: boolean;
  #lines: string[] = [];
  #pendingChars = 0;
  // Marks waiting for the end of the output line their input was echoed on.
  #marks: string[] = [];
  #cells: string[] = [];
  #col = 0;
  #parse: Parse = "text";
  #csi = "";
  #input = "";
  #afterCr = false;
  // An input line cut the output line short: the echo's newline is not a new line.
  #broken = false;

  /** `echo`: a terminal (TTY run) echoed the input into the output. */
  constructor(options: { echo: boolean }) {
    this.#echo = options.echo;
  }

  /** Output text (already decoded). */
  output(text: string): void {
    for (const ch of text) this.#outputChar(ch);
  }

  /** Input text (already decoded): keys shown in caret notation, one marked line per line. */
  input(text: string): void {
    for (const ch of text) {
      const code = ch.codePointAt(0)!;
      if (ch === "\n" && this.#afterCr) {
        this.#afterCr = false;
        continue;
      }
      this.#afterCr = ch === "\r";
      if (ch === "\r" || ch === "\n") {
        this.#endInput();
      } else if (code < 0x20 || code === 0x7f) {
        this.#input += code === 0x7f ? "^?" : `^${String.fromCharCode(code + 0x40)}`;
        // Interrupt and end-of-file end what was being typed.
        if (code === 0x03 || code === 0x04) this.#endInput();
      } else {
        this.#input += printable(ch);
      }
    }
  }

  /** A terminal resize. */
  resize(cols: number, rows: number): void {
    this.#mark(`[terminal resized to ${cols}x${rows}]`);
  }

  /** Characters of finished lines that {@link take} would hand out. */
  get pending(): number {
    return this.#pendingChars;
  }

  /** The finished lines so far, each ending with a newline; they are not kept. */
  take(): string {
    const text = this.#lines.length === 0 ? "" : this.#lines.join("\n") + "\n";
    this.#lines = [];
    this.#pendingChars = 0;
    return text;
  }

  /** The rest of the transcript (after what {@link take} handed out), ending with a newline. */
  finish(): string {
    if (this.#input !== "") this.#endInput();
    const lines = [...this.#lines];
    if (this.#cells.length > 0) lines.push(this.#cells.join("").trimEnd());
    lines.push(...this.#marks);
    return lines.length === 0 ? "" : lines.join("\n") + "\n";
  }

  #endInput(): void {
    this.#mark(this.#input);
    this.#input = "";
  }

  #mark(text: string): void {
    const mark = (INPUT_MARK + text).trimEnd();
    if (this.#cells.length === 0) {
      this.#line(mark);
    } else if (this.#echo) {
      this.#marks.push(mark);
    } else {
      this.#newline();
      this.#broken = true;
      this.#line(mark);
    }
  }

  #newline(): void {
    this.#line(this.#cells.join("").trimEnd());
    for (const mark of this.#marks) this.#line(mark);
    this.#marks = [];
    this.#cells = [];
    this.#col = 0;
  }

  #line(text: string): void {
    this.#lines.push(text);
    this.#pendingChars += text.length + 1;
  }

  #put(text: string): void {
    this.#broken = false;
    for (const ch of text) {
      // A line longer than any screen is wrapped, or it would be held whole.
      if (this.#col >= MAX_LINE) this.#newline();
      while (this.#cells.length < this.#col) this.#cells.push(" ");
      this.#cells[this.#col++] = ch;
    }
  }

  #outputChar(ch: string): void {
    switch (this.#parse) {
      case "esc":
        this.#parse = ch === "["
          ? "csi"
          : "]PX^_".includes(ch)
          ? "string"
          : "()*+-./#%".includes(ch)
          ? "charset"
          : "text";
        this.#csi = "";
        return;
      case "charset":
        this.#parse = "text";
        return;
      case "csi": {
        const code = ch.codePointAt(0)!;
        if (code >= 0x40 && code <= 0x7e) {
          this.#parse = "text";
          this.#applyCsi(this.#csi, ch);
        } else if (code < 0x20 || this.#csi.length > 64) {
          this.#parse = "text";
        } else {
          this.#csi += ch;
        }
        return;
      }
      case "string":
        if (ch === "\x07") this.#parse = "text";
        else if (ch === "\x1b") this.#parse = "string_esc";
        return;
      case "string_esc":
        this.#parse = ch === "\\" ? "text" : "string";
        return;
    }
    const code = ch.codePointAt(0)!;
    if (ch === "\x1b") this.#parse = "esc";
    else if (ch === "\n") {
      if (this.#broken) this.#broken = false;
      else this.#newline();
    } else if (ch === "\r") this.#col = 0;
    else if (ch === "\b") this.#col = Math.max(0, this.#col - 1);
    else if (ch === "\t") this.#put(" ".repeat(8 - (this.#col % 8)));
    else if (ch === "\x07") return;
    else this.#put(printable(ch, code));
  }

  #applyCsi(params: string, final: string): void {
    const n = Number.parseInt(params, 10);
    const count = Number.isNaN(n) || n < 1 ? 1 : Math.min(n, 1000);
    switch (final) {
      case "K":
        if (params === "" || params === "0") {
          this.#cells.length = Math.min(this.#cells.length, this.#col);
        } else if (params === "1") this.#cells.fill(" ", 0, this.#col);
        else if (params === "2") this.#cells = [];
        return;
      case "C":
        this.#col += count;
        return;
      case "D":
        this.#col = Math.max(0, this.#col - count);
        return;
      case "G":
        this.#col = count - 1;
        return;
    }
  }
}

// Control characters (C0, DEL, C1) become visible escapes, never reach the terminal.
function printable(ch: string, code = ch.codePointAt(0)!): string {
  if (code < 0x20 || code === 0x7f) return escapeByte(code);
  if (code >= 0x80 && code <= 0x9f) return `\\u${code.toString(16).padStart(4, "0")}`;
  return ch;
}
