/**
 * Watching a running attached session (`oneoff watch`, the dashboard's live
 * view): the lines of the server's stream, how fast a watched session's
 * recording is cut, and how many chunks that may cost. The watcher's feed
 * is the recording itself, read from the store as its chunks arrive.
 * @module
 */
import {
  boolean,
  byType,
  decodeJson,
  type Decoder,
  type Decoding,
  integer,
  number,
  object,
  oneOf,
  string,
} from "./_decode.ts";
import { RUN_STATES, type RunState } from "./run.ts";

/**
 * One line of `GET /apps/:app/runs/:run/watch` (NDJSON): `start` once,
 * then the session's output (`o`, base64 bytes) and resizes (`r`) as they
 * are recorded, `problem` when a chunk cannot be read, `keepalive` while
 * nothing happens, and `end` last. `t` is milliseconds since the session
 * started.
 */
export type WatchLine =
  | { type: "start"; run: string; cols: number; rows: number; tty: boolean; from: "start" | "now" }
  | { type: "o"; t: number; data: string }
  | { type: "r"; t: number; cols: number; rows: number }
  | { type: "problem"; message: string }
  | { type: "keepalive" }
  | { type: "end"; state: RunState; exit_code: number | null; reason: string | null };

/** A watched session's recorder cuts a chunk at most this long after its first event. */
export const WATCHED_FLUSH_MS = 25;
/** An unwatched session's recorder does (the recorder's default). */
export const UNWATCHED_FLUSH_MS = 250;
// The recorder also cuts a chunk per this many bytes recorded.
const CHUNK_BYTES = 256 * 1024;

/**
 * The highest chunk seq the server stores of a run that may last
 * `timeoutMs` and record `quotaBytes`: the chunks of an unwatched recorder
 * (one per 250 ms, or per 256 KiB) twice over, and some to spare. This
 * bounds the rows a run costs, whatever its agent sends.
 */
export function maxAuditSeq(timeoutMs: number, quotaBytes: number): number {
  return 2 * unwatchedChunks(timeoutMs, quotaBytes) + 64;
}

/**
 * Below this seq a watched session's chunks may be cut every
 * WATCHED_FLUSH_MS; from it on, every UNWATCHED_FLUSH_MS again. It keeps in
 * reserve what the whole run needs unwatched, so that watching never makes a
 * recording go past {@link maxAuditSeq}: a session watched while it prints
 * without a pause for longer than a tenth of its timeout is shown to its
 * watchers at the slower pace from then on, nothing lost.
 */
export function fastChunkLimit(timeoutMs: number, quotaBytes: number): number {
  return maxAuditSeq(timeoutMs, quotaBytes) - unwatchedChunks(timeoutMs, quotaBytes) - 32;
}

function unwatchedChunks(timeoutMs: number, quotaBytes: number): number {
  return Math.ceil(timeoutMs / UNWATCHED_FLUSH_MS) + Math.ceil(quotaBytes / CHUNK_BYTES);
}

const WATCH_NOTICE_END = " is watching this session";

// Control characters, C1 controls and bidirectional overrides of a watcher's
// name (a token's, which the admin names freely) are shown escaped: a name
// holding "cursor up, erase line" would wipe its own notice off the
// watched user's terminal.
// deno-lint-ignore no-control-regex
const CONTROLS = /[\u0000-\u001f\u007f-\u009f\u200e\u200f\u202a-\u202e\u2066-\u2069]/gu;

function shownName(watcher: string): string {
  return watcher.replace(CONTROLS, (c) => `\\u${c.codePointAt(0)!.toString(16).padStart(4, "0")}`);
}

/** The line a session's user gets on stderr when someone starts watching. */
export function watchNotice(watcher: string): string {
  return `${shownName(watcher)}${WATCH_NOTICE_END}`;
}

/** True for a notice of {@link watchNotice}: shown even with `--silent`, being about privacy. */
export function isWatchNotice(text: string): boolean {
  return text.replace(/\r?\n$/, "").endsWith(WATCH_NOTICE_END);
}

/** The marker a recording (and so every watcher) shows where a watcher came or went. */
export function watchMarker(watcher: string, started: boolean): string {
  return `\r\n[oneoff: ${shownName(watcher)} ${started ? "started" : "stopped"} watching]\r\n`;
}

function orNull<T>(decoder: Decoder<T>): Decoder<T | null> {
  return (value, field) => value === null ? null : decoder(value, field);
}

const watchLine: Decoder<WatchLine> = byType({
  start: object({
    run: string,
    cols: integer,
    rows: integer,
    tty: boolean,
    from: oneOf(["start", "now"] as const),
  }),
  o: object({ t: number, data: string }),
  r: object({ t: number, cols: integer, rows: integer }),
  problem: object({ message: string }),
  keepalive: object({}),
  end: object({
    state: oneOf(RUN_STATES),
    exit_code: orNull(integer),
    reason: orNull(string),
  }),
});

/** Parses one line of the watch stream; the error names what was wrong. */
export function decodeWatchLine(text: string): Decoding<WatchLine> {
  return decodeJson(watchLine, text);
}
