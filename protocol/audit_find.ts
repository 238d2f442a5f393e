/**
 * Finding recorded sessions: `GET /apps/:app/audit/sessions` (who ran what,
 * why, how long, how much was recorded) and `POST /apps/:app/audit/search`
 * (the sessions whose input or output holds a text). The text searched for
 * travels in a POST body, never in a URL, since URLs reach access logs.
 * @module
 */
import {
  DecodeError,
  type Decoder,
  decodeValue,
  type Decoding,
  integer,
  object,
} from "./_decode.ts";
import type { RunState } from "./run.ts";

/** How far back `audit list` and `audit search` look unless told (`--since`). */
export const DEFAULT_AUDIT_SINCE_MS = 7 * 24 * 3600_000;
/** Sessions one `audit list` reply holds at most. */
export const MAX_SESSIONS_PAGE = 500;
/** Sessions one search decrypts at most (the newest first); more are said, not searched. */
export const MAX_SEARCH_SESSIONS = 1000;
/** Hits one search returns at most: later sessions are not searched. */
export const MAX_SEARCH_HITS = 200;
/** Hits listed per session at most (`more` says there were others). */
export const MAX_SESSION_HITS = 20;
/** Characters of a searched text at most. */
export const MAX_SEARCH_CHARS = 200;

/** A recorded session as `audit list` shows it. */
export interface AuditSessionInfo {
  /** Its label, e.g. `one-off-3`. */
  run: string;
  id: string;
  /** Who started it. */
  user: string;
  command: string;
  /** The reason given with `--reason` (null: none). */
  reason: string | null;
  state: RunState;
  exit_code: number | null;
  started_at: string;
  ended_at: string | null;
  /** Null while it runs. */
  duration_ms: number | null;
  /** Input and output bytes recorded. */
  bytes: number;
}

/** `GET /apps/:app/audit/sessions?since_ms=&user=&before=&limit=`: newest first. */
export interface AuditSessionsReply {
  sessions: AuditSessionInfo[];
  /** The `before` of the next (older) page, or null when this one is the last. */
  next_before: number | null;
}

/** `POST /apps/:app/audit/search`. */
export interface AuditSearchBody {
  /** Searched for as it is (case sensitive) in each line of input and output. */
  text: string;
  /** Only sessions started this long ago at most (default 7 days). */
  since_ms?: number;
  /** Only sessions of this user. */
  user?: string;
}

/** A line of a session that holds the text. */
export interface AuditSearchHit {
  /** Seconds from the session's start: where its replay shows the line. */
  t: number;
  stream: "input" | "output";
  /** The line, cut around the text when long. */
  line: string;
}

/** What a search found in one session. */
export interface AuditSearchResult {
  session: AuditSessionInfo;
  hits: AuditSearchHit[];
  /** The session holds more hits than listed. */
  more: boolean;
  /** What of its recording could not be read or trusted (it was searched as far as it could be). */
  problems: string[];
}

/** `POST /apps/:app/audit/search`: the sessions with hits, newest first. */
export interface AuditSearchReply {
  results: AuditSearchResult[];
  /** Sessions searched. */
  searched: number;
  /** More sessions were in range than one search decrypts: the oldest were not searched. */
  truncated: boolean;
  /** The hits stopped at {@link MAX_SEARCH_HITS}: later sessions were not searched. */
  more_hits: boolean;
  took_ms: number;
}

// No message repeats the text: it may be a secret someone looks for.
const searchText: Decoder<string> = (value) => {
  if (typeof value !== "string" || value.trim() === "") {
    throw new DecodeError("Give a text to search for", "invalid_text");
  }
  if ([...value].length > MAX_SEARCH_CHARS) {
    throw new DecodeError(
      `The text to search for is longer than ${MAX_SEARCH_CHARS} characters`,
      "invalid_text",
    );
  }
  // deno-lint-ignore no-control-regex
  if (/[\x00-\x1f\x7f-\x9f]/.test(value)) {
    throw new DecodeError(
      "The text to search for has a control character: transcripts show none",
      "invalid_text",
    );
  }
  return value;
};

const userName: Decoder<string> = (value) => {
  if (typeof value !== "string" || value === "") {
    throw new DecodeError('Field "user" must be a user name', "invalid");
  }
  return value;
};

const sinceMs: Decoder<number> = (value, field) => {
  const ms = integer(value, field);
  if (ms <= 0) throw new DecodeError('Field "since_ms" must be positive', "invalid");
  return ms;
};

const auditSearchBody: Decoder<AuditSearchBody> = object({ text: searchText }, {
  since_ms: sinceMs,
  user: userName,
});

/** Checks a `POST /apps/:app/audit/search` body. */
export function decodeAuditSearchBody(body: unknown): Decoding<AuditSearchBody> {
  return decodeValue(auditSearchBody, body);
}
