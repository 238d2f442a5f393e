/**
 * Searching session recordings for a text: each recording is decrypted and
 * turned into its transcript a chunk at a time (the same streaming read as
 * `audit show`), and only the lines holding the text are kept, so memory
 * stays the same whatever the sessions' length. The text and the lines
 * found go back to the searcher only: nothing of them is stored or logged.
 * @module
 */
import { INPUT_MARK, Transcript } from "./_transcript.ts";
import { streamDisplayEvents, transcribe } from "./render.ts";
import type { AuditRecording } from "./verify.ts";

/** One line of a session's transcript that holds the text searched for. */
export interface SearchHit {
  /** Seconds since the session's start when the line was complete on the screen. */
  t: number;
  /** Whether the line is typed input (`⟩ ` in the transcript) or output. */
  stream: "input" | "output";
  /** The line around the text, at most {@link CONTEXT_CHARS} characters. */
  line: string;
}

/** Characters of context shown around a hit at most. */
export const CONTEXT_CHARS = 160;

/**
 * The lines of a recording's transcript that contain `text` (case
 * sensitive), in order, at most `maxHits` of them; `more` says whether
 * the recording held others past that.
 */
export async function searchRecording(
  recording: AuditRecording,
  text: string,
  options: { maxHits: number },
): Promise<{ hits: SearchHit[]; more: boolean }> {
  const transcript = new Transcript({ echo: recording.size !== null });
  const hits: SearchHit[] = [];
  let more = false;
  let t = 0;
  const scan = (lines: string) => {
    for (const line of lines.split("\n")) {
      if (!line.includes(text)) continue;
      if (hits.length >= options.maxHits) {
        more = true;
        return;
      }
      hits.push(hitOf(line, text, t));
    }
  };
  for await (const event of streamDisplayEvents(recording)) {
    t = event[0];
    transcribe(transcript, event);
    // The lines this event finished were on the screen by its time.
    if (transcript.pending > 0) scan(transcript.take());
    if (more) return { hits, more };
  }
  scan(transcript.finish());
  return { hits, more };
}

function hitOf(line: string, text: string, t: number): SearchHit {
  const input = line.startsWith(INPUT_MARK);
  const body = input ? line.slice(INPUT_MARK.length) : line;
  return { t, stream: input ? "input" : "output", line: around(body, text) };
}

// The part of a long line centred on the text, with "…" where it was cut.
function around(line: string, text: string): string {
  if (line.length <= CONTEXT_CHARS) return line;
  const at = line.indexOf(text);
  const room = Math.max(0, CONTEXT_CHARS - text.length);
  const start = Math.max(0, Math.min(at - Math.floor(room / 2), line.length - CONTEXT_CHARS));
  const end = Math.min(line.length, start + Math.max(CONTEXT_CHARS, text.length));
  return (start > 0 ? "…" : "") + line.slice(start, end) + (end < line.length ? "…" : "");
}
