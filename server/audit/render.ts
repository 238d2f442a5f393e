/**
 * A readout shown to people: as an asciicast v2 recording (for `asciinema
 * play` and the dashboard's player) or as a plain-text transcript (for
 * `oneoff audit show`). Bytes that are not UTF-8 are shown as `\xNN`.
 * Each comes whole (for small readouts) or as text streamed in pieces from a
 * recording read a chunk at a time, which never holds the whole.
 * @module
 */
import { EscapingDecoder } from "./_display.ts";
import { Transcript } from "./_transcript.ts";
import type { AuditEvent, AuditReadout, AuditRecording } from "./verify.ts";

export { INPUT_MARK } from "./_transcript.ts";

/** Header fields of an asciicast that the readout does not know. */
export interface CastMeta {
  /** Shown by players, e.g. `demo one-off-3: bash`. */
  title?: string;
  /** The run's `TERM` (default `xterm-256color`). */
  term?: string;
  /** The run's command (asciicast's own `command` field). */
  command?: string;
  /** Who started the session (oneoff's own field, which players ignore). */
  user?: string;
  /** The reason its user gave (`--reason`; oneoff's own field). */
  reason?: string;
}

/** Size assumed for no-TTY runs, which have none. */
const DEFAULT_SIZE = { cols: 80, rows: 24 };

/** One event for display: seconds since the start, kind, text. */
export type DisplayEvent = [number, "i" | "o" | "r", string];

// Streamed text is handed on in pieces of about this many characters.
const PIECE_CHARS = 64 * 1024;

/** Turns events into display events one by one; a character split between events is kept whole. */
class Displayer {
  #decoders = { i: new EscapingDecoder(), o: new EscapingDecoder() };
  #end = 0;

  push(event: AuditEvent): DisplayEvent | null {
    const t = Math.round(event.t) / 1000;
    this.#end = t;
    if (event.kind === "r") return [t, "r", `${event.cols}x${event.rows}`];
    const text = this.#decoders[event.kind].decode(event.bytes);
    return text === "" ? null : [t, event.kind, text];
  }

  finish(): DisplayEvent[] {
    const rest: DisplayEvent[] = [];
    for (const kind of ["o", "i"] as const) {
      const text = this.#decoders[kind].flush();
      if (text !== "") rest.push([this.#end, kind, text]);
    }
    return rest;
  }
}

/**
 * The readout's events with their bytes decoded (a character split between
 * events is kept whole) and their times in seconds.
 */
export function displayEvents(readout: AuditReadout): DisplayEvent[] {
  const displayer = new Displayer();
  const events: DisplayEvent[] = [];
  for (const event of readout.events) {
    const shown = displayer.push(event);
    if (shown !== null) events.push(shown);
  }
  return [...events, ...displayer.finish()];
}

/** {@link displayEvents} of a recording, read as they are needed. */
export async function* streamDisplayEvents(
  recording: AuditRecording,
): AsyncGenerator<DisplayEvent> {
  const displayer = new Displayer();
  for await (const event of recording.events()) {
    const shown = displayer.push(event);
    if (shown !== null) yield shown;
  }
  yield* displayer.finish();
}

function castHeader(readout: Pick<AuditReadout, "size" | "t0">, meta: CastMeta): string {
  const size = readout.size ?? DEFAULT_SIZE;
  const header: Record<string, unknown> = {
    version: 2,
    width: size.cols,
    height: size.rows,
  };
  if (readout.t0 !== null) header.timestamp = Math.floor(readout.t0 / 1000);
  header.env = { TERM: meta.term ?? "xterm-256color", SHELL: "/bin/sh" };
  if (meta.command !== undefined) header.command = meta.command;
  if (meta.title !== undefined) header.title = meta.title;
  // asciicast v2 lets a header carry more fields: players skip what they do not know.
  if (meta.user !== undefined) header.user = meta.user;
  if (meta.reason !== undefined) header.reason = meta.reason;
  return JSON.stringify(header);
}

// Without a TTY nothing turned "\n" into "\r\n" on the way: a terminal
// player needs it to start lines at the left.
function castLine([t, kind, text]: DisplayEvent, noTty: boolean): string {
  const data = noTty && kind === "o" ? text.replace(/(?<!\r)\n/g, "\r\n") : text;
  return JSON.stringify([t, kind, data]);
}

/** The readout as an asciicast v2 file: a header line, then one JSON array per event. */
export function toAsciicast(readout: AuditReadout, meta: CastMeta = {}): string {
  const noTty = readout.size === null;
  const lines = [castHeader(readout, meta)];
  for (const event of displayEvents(readout)) lines.push(castLine(event, noTty));
  return lines.join("\n") + "\n";
}

/** {@link toAsciicast} of a recording, as pieces of text. */
export async function* streamAsciicast(
  recording: AuditRecording,
  meta: CastMeta = {},
): AsyncGenerator<string> {
  const noTty = recording.size === null;
  let piece = castHeader(recording, meta) + "\n";
  for await (const event of streamDisplayEvents(recording)) {
    piece += castLine(event, noTty) + "\n";
    if (piece.length >= PIECE_CHARS) {
      yield piece;
      piece = "";
    }
  }
  yield piece;
}

/** Hands one display event to a transcript (output, input or a resize). */
export function transcribe(transcript: Transcript, [, kind, text]: DisplayEvent): void {
  if (kind === "o") transcript.output(text);
  else if (kind === "i") transcript.input(text);
  else {
    const [cols, rows] = text.split("x").map(Number);
    transcript.resize(cols!, rows!);
  }
}

/** The readout as plain text: the output as it looked, each input line marked `⟩ `. */
export function toTranscript(readout: AuditReadout): string {
  const transcript = new Transcript({ echo: readout.size !== null });
  for (const event of displayEvents(readout)) transcribe(transcript, event);
  return transcript.finish();
}

/** {@link toTranscript} of a recording, as pieces of text (whole lines but the last). */
export async function* streamTranscript(recording: AuditRecording): AsyncGenerator<string> {
  const transcript = new Transcript({ echo: recording.size !== null });
  for await (const event of streamDisplayEvents(recording)) {
    transcribe(transcript, event);
    if (transcript.pending >= PIECE_CHARS) yield transcript.take();
  }
  yield transcript.finish();
}

/** Display events as the inside of a JSON array (`[...]` without the brackets), in pieces. */
export async function* streamEventsJson(recording: AuditRecording): AsyncGenerator<string> {
  let piece = "";
  let first = true;
  for await (const event of streamDisplayEvents(recording)) {
    piece += (first ? "" : ",") + JSON.stringify(event);
    first = false;
    if (piece.length >= PIECE_CHARS) {
      yield piece;
      piece = "";
    }
  }
  yield piece;
}
