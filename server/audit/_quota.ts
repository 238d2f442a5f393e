/**
 * The server's own check of a session's recording quota: an agent keeps to
 * `RunSpec.auditQuotaBytes`, but one that does not (old, buggy, hostile)
 * must not fill the database. Each chunk is charged what the agent counts,
 * the recorded input and output bytes, plus one unit per resize and for an
 * empty chunk (so that no flood of small events or chunks is free), and
 * anything that is not a recording chunk is charged its whole length. A
 * chunk that goes past the limit is cut where it does, and ends with a
 * marker saying so; chunks after it are not stored (their seqs are then
 * reported missing), but for one final chunk without events. A chunk's
 * fixed cost (some 150 bytes stored) is not charged, or an honest session
 * of keystrokes would be cut early; instead a seq no recorder reaches
 * within the run's timeout is refused, which bounds how many chunks a run
 * stores.
 * @module
 */
import { auditQuotaMarker, maxAuditSeq } from "../../protocol/mod.ts";
import { type ChunkData, parseChunk } from "./verify.ts";

/**
 * Charged units past the quota the server still stores: the agent's own
 * marker and the resizes, which it does not count.
 */
export const AUDIT_QUOTA_SLACK = 64 * 1024;

/** The most a run's chunks may be charged: the quota, the agent's marker, the slack. */
export function auditLimit(quotaBytes: number): number {
  return quotaBytes + new TextEncoder().encode(auditQuotaMarker(quotaBytes)).length +
    AUDIT_QUOTA_SLACK;
}

/**
 * The highest seq a recorder reaches within `timeoutMs`, twice over: the
 * protocol's bound, which a watched recorder keeps to as well.
 */
export const maxSeq = maxAuditSeq;

/** The output the server ends a recording with where it cut it. */
export function serverAuditMarker(quotaBytes: number): string {
  return `\r\n[oneoff: the server stopped this recording at its quota of ${quotaBytes} bytes: ` +
    `the agent sent more, which was not stored]\r\n`;
}

/** A chunk's plaintext, what it is charged, and its parsed form (null when not a chunk). */
export interface Charged {
  data: string;
  cost: number;
  chunk: ChunkData | null;
}

/** What `data` is charged against the quota. */
export function charge(data: string): Charged {
  const chunk = parseChunk(data);
  if (chunk === null) return { data, cost: data.length, chunk };
  let cost = chunk.events.length === 0 && chunk.final !== true ? 1 : 0;
  // Beyond what the events and the header fields take, the text is junk: charged too.
  let expected = 160;
  for (const [, kind, value] of chunk.events) {
    cost += eventCost(kind, value);
    expected += value.length + 32;
  }
  if (data.length > expected) cost += data.length - expected;
  return { data, cost, chunk };
}

/**
 * The chunk cut to `room` units, ending with the server's marker; its
 * events past the room are gone, the one across it is cut to fit.
 */
export function cut(chunk: ChunkData, room: number, quotaBytes: number): string {
  const events: ChunkData["events"] = [];
  let left = Math.max(0, room);
  let ms = 0;
  for (const event of chunk.events) {
    const [at, kind, value] = event;
    ms = at;
    const cost = eventCost(kind, value);
    if (cost <= left) {
      events.push(event);
      left -= cost;
      continue;
    }
    if ((kind === "i" || kind === "o") && left > 0) {
      const bytes = decode(value);
      if (bytes !== null) events.push([at, kind, bytes.subarray(0, left).toBase64()]);
    }
    break;
  }
  const marker = new TextEncoder().encode(serverAuditMarker(quotaBytes)).toBase64();
  events.push([ms, "o", marker]);
  const kept: ChunkData = { v: 1, t0: chunk.t0, events };
  if (chunk.size !== undefined) kept.size = chunk.size;
  if (chunk.final === true) kept.final = true;
  return JSON.stringify(kept);
}

/** A chunk without events that ends the recording, in its plain form; else null. */
export function emptyFinal(chunk: ChunkData | null): string | null {
  if (chunk === null || chunk.final !== true || chunk.events.length > 0) return null;
  return JSON.stringify({ v: 1, t0: chunk.t0, events: [], final: true });
}

function eventCost(kind: string, value: string): number {
  if (kind === "i" || kind === "o") return Math.max(1, base64Bytes(value));
  if (kind === "r" && value.length <= 11) return 1;
  return value.length + 1;
}

// Decoded length of base64 text, without decoding it.
function base64Bytes(value: string): number {
  let pad = 0;
  if (value.endsWith("==")) pad = 2;
  else if (value.endsWith("=")) pad = 1;
  return Math.floor(value.length * 3 / 4) - pad;
}

function decode(value: string): Uint8Array | null {
  try {
    return Uint8Array.fromBase64(value);
  } catch {
    return null;
  }
}
