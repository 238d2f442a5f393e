/**
 * Reading a run's stored chunks back: decrypt each, check the chain and the
 * sequence, and say in plain sentences what does not hold. Bad data never
 * throws: what can be read is returned with the problems beside it.
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

/** What the reader expects of the recording. */
export interface Expectation {
  /** The run ran attached, so a recording should exist. */
  recorded: boolean;
  /** The run has not ended: a missing final chunk is no problem yet. */
  running: boolean;
}

/** The plaintext of one chunk, as the agent's recorder writes it. */
interface ChunkData {
  v: 1;
  t0: number;
  events: [number, string, string][];
  final?: true;
  size?: TermSize;
}

type Opened =
  | { status: "ok"; data: ChunkData }
  | { status: "no_key" | "auth" | "format" };

/** Decrypts and checks a run's chunks (in any order) with the keys of `keyring`. */
export async function verifyRecording(
  runId: string,
  rows: AuditChunkRow[],
  keyring: Keyring,
  expect: Expectation,
): Promise<AuditReadout> {
  const chunks = [...rows].sort((a, b) => a.seq - b.seq);
  const bySeq = new Map(chunks.map((row) => [row.seq, row]));
  const hashes = new Map<number, string>();
  for (const row of chunks) hashes.set(row.seq, await payloadHash(row.payload));

  const opened = new Map<number, Opened>();
  for (const row of chunks) {
    opened.set(row.seq, await openChunk(runId, row, row.prev_hash, keyring));
  }
  // A key under which nothing authenticates is more likely the wrong key than
  // every chunk altered.
  const keyWorks = new Set<string>();
  for (const row of chunks) if (opened.get(row.seq)?.status === "ok") keyWorks.add(row.key_id);

  const problems: string[] = [];
  const readable: ChunkData[] = [];
  let expected = 0;
  for (const row of chunks) {
    const { seq } = row;
    for (let gap = expected; gap < seq; gap++) problems.push(`Chunk ${gap} is missing`);
    expected = seq + 1;
    const link = seq === 0 ? ZERO_HASH : hashes.get(seq - 1);
    const linked = link === undefined ? null : row.prev_hash === link;
    let result = opened.get(seq)!;

    if (result.status === "no_key") {
      problems.push(
        `Chunk ${seq} cannot be decrypted: the key "${row.key_id}" is not in the key file`,
      );
    } else if (result.status === "auth" && linked === false) {
      // Only the stored link may have been edited: the content still authenticates
      // against the link it should have.
      const relinked = await openChunk(runId, row, link!, keyring);
      if (relinked.status === "ok") {
        problems.push(`Chunk ${seq} was altered: its link to chunk ${seq - 1} was changed`);
        result = relinked;
      } else {
        problems.push(`Chunk ${seq} was removed or reordered`);
      }
    } else if (result.status === "auth") {
      problems.push(
        keyWorks.has(row.key_id)
          ? `Chunk ${seq} was altered: authentication failed`
          : `Chunk ${seq} cannot be decrypted with the key "${row.key_id}": authentication failed ` +
            `(is this the key file it was written with?)`,
      );
    } else if (result.status === "format") {
      problems.push(`Chunk ${seq} is not a recording chunk this server can read`);
    } else if (row.prev_hash === MISSING_HASH) {
      if (bySeq.has(seq - 1)) {
        problems.push(
          `Chunk ${seq} was stored before chunk ${seq - 1} arrived: their order cannot be verified`,
        );
      }
    } else if (linked === false && opened.get(seq - 1)?.status === "ok") {
      // Both authenticate, yet this chunk was recorded after another chunk seq-1.
      problems.push(`Chunk ${seq - 1} was replaced: chunk ${seq} does not follow it`);
    }
    if (result.status === "ok") readable.push(result.data);
  }

  const last = chunks.at(-1);
  const final = readable.some((data) => data.final === true);
  if (expect.recorded && !expect.running && !final) {
    if (last === undefined) {
      problems.push("Recording incomplete: no chunk was stored");
    } else if (opened.get(last.seq)?.status === "ok") {
      problems.push(
        `Recording incomplete: the final chunk has not arrived (the last stored is chunk ${last.seq})`,
      );
    }
  }
  return { ...collectEvents(readable), final, problems };
}

async function openChunk(
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

function parseChunk(text: string): ChunkData | null {
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

function collectEvents(chunks: ChunkData[]): Pick<AuditReadout, "events" | "size" | "t0"> {
  const first = chunks[0];
  if (first === undefined) return { events: [], size: null, t0: null };
  const t0 = first.t0;
  const sized = chunks.find((data) => data.size !== undefined)?.size;
  const size = sized && validSize(sized.cols, sized.rows)
    ? { cols: sized.cols, rows: sized.rows }
    : null;
  const events: AuditEvent[] = [];
  let latest = 0;
  for (const data of chunks) {
    for (const [ms, kind, value] of data.events) {
      // Wall clocks step back now and then; a replay must not.
      const t = latest = Math.max(latest, data.t0 + ms - t0);
      if (kind === "i" || kind === "o") {
        const bytes = decodeBase64(value);
        if (bytes !== null) events.push({ t, kind, bytes });
      } else if (kind === "r") {
        const match = /^(\d{1,5})x(\d{1,5})$/.exec(value);
        const cols = Number(match?.[1]);
        const rows = Number(match?.[2]);
        if (validSize(cols, rows)) events.push({ t, kind, cols, rows });
      }
    }
  }
  return { events, size, t0 };
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
