/**
 * A readout shown to people: as an asciicast v2 recording (for `asciinema
 * play` and the dashboard's player) or as a plain-text transcript (for
 * `oneoff audit show`). Bytes that are not UTF-8 are shown as `\xNN`.
 * @module
 */
import { EscapingDecoder } from "./_display.ts";
import { Transcript } from "./_transcript.ts";
import type { AuditReadout } from "./verify.ts";

export { INPUT_MARK } from "./_transcript.ts";

/** Header fields of an asciicast that the readout does not know. */
export interface CastMeta {
  /** Shown by players, e.g. `demo one-off-3: bash`. */
  title?: string;
  /** The run's `TERM` (default `xterm-256color`). */
  term?: string;
}

/** Size assumed for no-TTY runs, which have none. */
const DEFAULT_SIZE = { cols: 80, rows: 24 };

/** One event for display: seconds since the start, kind, text. */
export type DisplayEvent = [number, "i" | "o" | "r", string];

/**
 * The readout's events with their bytes decoded (a character split between
 * events is kept whole) and their times in seconds.
 */
export function displayEvents(readout: AuditReadout): DisplayEvent[] {
  const decoders = { i: new EscapingDecoder(), o: new EscapingDecoder() };
  const events: DisplayEvent[] = [];
  for (const event of readout.events) {
    const t = Math.round(event.t) / 1000;
    if (event.kind === "r") {
      events.push([t, "r", `${event.cols}x${event.rows}`]);
      continue;
    }
    const text = decoders[event.kind].decode(event.bytes);
    if (text !== "") events.push([t, event.kind, text]);
  }
  const end = Math.round(readout.events.at(-1)?.t ?? 0) / 1000;
  for (const kind of ["o", "i"] as const) {
    const rest = decoders[kind].flush();
    if (rest !== "") events.push([end, kind, rest]);
  }
  return events;
}

/** The readout as an asciicast v2 file: a header line, then one JSON array per event. */
export function toAsciicast(readout: AuditReadout, meta: CastMeta = {}): string {
  const size = readout.size ?? DEFAULT_SIZE;
  const header: Record<string, unknown> = {
    version: 2,
    width: size.cols,
    height: size.rows,
  };
  if (readout.t0 !== null) header.timestamp = Math.floor(readout.t0 / 1000);
  header.env = { TERM: meta.term ?? "xterm-256color", SHELL: "/bin/sh" };
  if (meta.title !== undefined) header.title = meta.title;
  const lines = [JSON.stringify(header)];
  // Without a TTY nothing turned "\n" into "\r\n" on the way: a terminal
  // player needs it to start lines at the left.
  const noTty = readout.size === null;
  for (const [t, kind, text] of displayEvents(readout)) {
    const data = noTty && kind === "o" ? text.replace(/(?<!\r)\n/g, "\r\n") : text;
    lines.push(JSON.stringify([t, kind, data]));
  }
  return lines.join("\n") + "\n";
}

/** The readout as plain text: the output as it looked, each input line marked `⟩ `. */
export function toTranscript(readout: AuditReadout): string {
  const transcript = new Transcript({ echo: readout.size !== null });
  for (const [, kind, text] of displayEvents(readout)) {
    if (kind === "o") transcript.output(text);
    else if (kind === "i") transcript.input(text);
    else {
      const [cols, rows] = text.split("x").map(Number);
      transcript.resize(cols!, rows!);
    }
  }
  return transcript.finish();
}
