/**
 * Reading a run's stored chunks back: decrypt each, check the chain and the
 * sequence, and say in plain sentences what does not hold. Bad data never
 * throws: what can be read is returned with the problems beside it.
 *
 * A recording may be far larger than the server's memory, so it is read
 * twice, a page of chunks at a time: a first pass checks every chunk and
 * keeps only the problems and the few chunks that cannot be read; the
 * events then come from a second pass, one chunk decrypted at a time.
 * @module
 */
import type { AuditChunkRow } from "../store/mod.ts";
import { MISSING_HASH, payloadHash, unseal, ZERO_HASH } from "./_crypto.ts";
import type { Keyring } from "./keyring.ts";

/** A terminal size. */
export interface TermSize {
  cols: number;
  rows: number;
}

/** One recorded event; `t` is milliseconds since the session started. */
export type AuditEvent =
  | { t: number; kind: "i" | "o"; bytes: Uint8Array }
  | { t: number; kind: "r"; cols: number; rows: number };

/** What could be read of a recording, and what is wrong with it. */
export interface AuditReadout {
  /** In order, with non-decreasing times. */
  events: AuditEvent[];
  /** The initial terminal size; null for no-TTY runs or when unknown. */
  size: TermSize | null;
  /** Epoch milliseconds of the session start; null when no chunk could be read. */
  t0: number | null;
  /** True when the final chunk was read. */
  final: boolean;
  /** Human sentences, each naming the chunk concerned; empty when all is well. */
  problems: string[];
}

/** A checked recording whose events are read on demand, a chunk at a time. */
export interface AuditRecording extends Omit<AuditReadout, "events"> {
  /** The readable events in order; each call reads the store again, page by page. */
  events(): AsyncGenerator<AuditEvent>;
}

/** What the reader expects of the recording. */
export interface Expectation {
  /** The run ran attached, so a recording should exist. */
  recorded: boolean;
  /** The run has not ended: a missing final chunk is no problem yet. */
  running: boolean;
}

/** Where a recording's chunks and keys come from. */
export interface ChunkSource {
  /** Chunks with a seq above `after`, in order, a bounded page; empty at the end. */
  page(after: number): Promise<AuditChunkRow[]>;
  /** The keys now. */
  keyring: Keyring;
  /** Loads the key file again (another server may have rotated it). */
  reload(): Promise<Keyring>;
}

/** Problems listed at most; the rest are counted in one last sentence. */
export const MAX_PROBLEMS = 1000;

/** The plaintext of one chunk, as the agent's recorder writes it. */
export interface ChunkData {
  v: 1;
  t0: number;
  events: [number, string, string][];
  final?: true;
  size?: TermSize;
}

/** What opening a chunk gave: its data, or why not. */
export type Opened =
  | { status: "ok"; data: ChunkData }
  | { status: "no_key" | "auth" | "format" };

// A problem whose sentence waits for the end of the first pass: whether a
// key opened any chunk decides between "altered" and "wrong key".
type Problem = string | { seq: number; key: string };

/** Checks every chunk of a run (first pass); the events are read when asked for. */
export async function openRecording(
  runId: string,
  source: ChunkSource,
  expect: Expectation,
): Promise<AuditRecording> {
  let keyring = source.keyring;
  let reloaded = false;
  const problems: Problem[] = [];
  let extra = 0;
  const problem = (p: Problem) => {
    if (problems.length < MAX_PROBLEMS) problems.push(p);
    else extra++;
  };
  const keyWorks = new Set<string>();
  // What the second pass skips or opens differently; only bad chunks are kept.
  const skip = new Set<number>();
  const relinked = new Map<number, string>();
  const gaps: [number, number][] = [];
  let prev: { seq: number; hash: string; status: Opened["status"] } | null = null;
  let expected = 0;
  let t0: number | null = null;
  let size: TermSize | null | undefined;
  let final = false;

  for (let rows = await source.page(-1); rows.length > 0; rows = await source.page(prev!.seq)) {
    for (const row of rows) {
      const { seq } = row;
      if (!keyring.keys.has(row.key_id) && !reloaded) {
        keyring = await source.reload();
        reloaded = true;
      }
      if (seq > expected) {
        gaps.push([expected, seq - 1]);
        problem(
          seq - 1 === expected
            ? `Chunk ${expected} is missing`
            : `Chunks ${expected} to ${seq - 1} are missing`,
        );
      }
      expected = seq + 1;
      const before = prev?.seq === seq - 1 ? prev : null;
      const link = seq === 0 ? ZERO_HASH : before?.hash;
      const linked = link === undefined ? null : row.prev_hash === link;
      const opened = await openChunk(runId, row, row.prev_hash, keyring);
      if (opened.status === "ok") keyWorks.add(row.key_id);
      let result = opened;

      if (opened.status === "no_key") {
        problem(`Chunk ${seq} cannot be decrypted: the key "${row.key_id}" is not in the key file`);
      } else if (opened.status === "auth" && linked === false) {
        // Only the stored link may have been edited: the content still authenticates
        // against the link it should have.
        const again = await openChunk(runId, row, link!, keyring);
        if (again.status === "ok") {
          problem(`Chunk ${seq} was altered: its link to chunk ${seq - 1} was changed`);
          relinked.set(seq, link!);
          result = again;
        } else {
          problem(`Chunk ${seq} was removed or reordered`);
        }
      } else if (opened.status === "auth") {
        problem({ seq, key: row.key_id });
      } else if (opened.status === "format") {
        problem(`Chunk ${seq} is not a recording chunk this server can read`);
      } else if (row.prev_hash === MISSING_HASH) {
        if (before !== null) {
          problem(
            `Chunk ${seq} was stored before chunk ${
              seq - 1
            } arrived: their order cannot be verified`,
          );
        }
      } else if (linked === false && before?.status === "ok") {
        // Both authenticate, yet this chunk was recorded after another chunk seq-1.
        problem(`Chunk ${seq - 1} was replaced: chunk ${seq} does not follow it`);
      }
      if (result.status === "ok") {
        t0 ??= result.data.t0;
        if (size === undefined && result.data.size !== undefined) size = termSize(result.data.size);
        if (result.data.final === true) final = true;
      } else {
        skip.add(seq);
      }
      prev = { seq, hash: await payloadHash(row.payload), status: opened.status };
    }
  }

  const sentences = problems.map((p) =>
    typeof p === "string"
      ? p
      : keyWorks.has(p.key)
      ? `Chunk ${p.seq} was altered: authentication failed`
      : `Chunk ${p.seq} cannot be decrypted with the key "${p.key}": authentication failed ` +
        `(is this the key file it was written with?)`
  );
  if (expect.recorded && !expect.running && !final) {
    if (prev === null) {
      sentences.push("Recording incomplete: no chunk was stored");
    } else if (prev.status === "ok") {
      sentences.push(
        `Recording incomplete: the final chunk has not arrived (the last stored is chunk ${prev.seq})`,
      );
    }
  }
  if (extra > 0) sentences.push(`...and ${extra} more problems`);

  const last = prev?.seq ?? -1;
  const start = t0;
  const read = async function* (): AsyncGenerator<AuditEvent> {
    if (start === null) return;
    let latest = 0;
    let after = -1;
    for (let rows = await source.page(after); rows.length > 0; rows = await source.page(after)) {
      for (const row of rows) {
        after = row.seq;
        // Only what the first pass checked: later chunks and gaps filled since are not.
        if (row.seq > last) return;
        if (skip.has(row.seq) || gaps.some(([a, b]) => row.seq >= a && row.seq <= b)) continue;
        const opened = await openChunk(
          runId,
          row,
          relinked.get(row.seq) ?? row.prev_hash,
          keyring,
        );
        if (opened.status !== "ok") continue;
        const { data } = opened;
        for (const [ms, kind, value] of data.events) {
          // Wall clocks step back now and then; a replay must not.
          const t = latest = Math.max(latest, data.t0 + ms - start);
          const event = toEvent(t, kind, value);
          if (event !== null) yield event;
        }
      }
    }
  };
  return { size: size ?? null, t0, final, problems: sentences, events: read };
}

/** Decrypts one stored chunk under the link it was stored with (or `prevHash`). */
export async function openChunk(
  runId: string,
  row: AuditChunkRow,
  prevHash: string,
  keyring: Keyring,
): Promise<Opened> {
  const key = keyring.keys.get(row.key_id);
  if (key === undefined) return { status: "no_key" };
  const text = await unseal(key, { runId, seq: row.seq, prevHash }, row.payload);
  if (text === null) return { status: "auth" };
  const data = parseChunk(text);
  return data === null ? { status: "format" } : { status: "ok", data };
}

/** A chunk's plaintext as the recorder writes it, or null when it is not one. */
export function parseChunk(text: string): ChunkData | null {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return null;
  }
  const data = value as Partial<ChunkData> | null;
  if (data?.v !== 1 || typeof data.t0 !== "number" || !Array.isArray(data.events)) return null;
  const wellFormed = data.events.every((e) =>
    Array.isArray(e) && typeof e[0] === "number" && typeof e[1] === "string" &&
    typeof e[2] === "string"
  );
  return wellFormed ? data as ChunkData : null;
}

function toEvent(t: number, kind: string, value: string): AuditEvent | null {
  if (kind === "i" || kind === "o") {
    const bytes = decodeBase64(value);
    return bytes === null ? null : { t, kind, bytes };
  }
  if (kind !== "r") return null;
  const match = /^(\d{1,5})x(\d{1,5})$/.exec(value);
  const cols = Number(match?.[1]);
  const rows = Number(match?.[2]);
  return validSize(cols, rows) ? { t, kind, cols, rows } : null;
}

// The first chunk that gives a size decides it, even when that size is not valid.
function termSize(sized: TermSize): TermSize | null {
  return validSize(sized.cols, sized.rows) ? { cols: sized.cols, rows: sized.rows } : null;
}

function validSize(cols: unknown, rows: unknown): boolean {
  return Number.isInteger(cols) && Number.isInteger(rows) && (cols as number) > 0 &&
    (rows as number) > 0;
}

function decodeBase64(value: string): Uint8Array | null {
  try {
    return Uint8Array.fromBase64(value);
  } catch {
    return null;
  }
}
