/**
 * Test support only: writes tar archives header by header, so tests can build
 * the hostile entries (`../`, devices, escaping links, setuid bits) that no
 * honest archiver produces.
 * @module
 */

import { createHash } from "node:crypto";
import { gzipSync } from "node:zlib";

/** Entry kinds mapped to their ustar type flags. */
const TYPE_FLAGS = {
  file: "0",
  hardlink: "1",
  symlink: "2",
  char: "3",
  block: "4",
  dir: "5",
  fifo: "6",
} as const;

/** One entry of a hand-made archive. */
export interface RawEntry {
  path: string;
  type?: keyof typeof TYPE_FLAGS;
  mode?: number;
  uid?: number;
  gid?: number;
  body?: Uint8Array | string;
  linkpath?: string;
}

const encoder = new TextEncoder();

function putString(block: Uint8Array, offset: number, length: number, value: string): void {
  const bytes = encoder.encode(value);
  if (bytes.length > length) {
    throw new Error(`Cannot write tar field "${value}": longer than ${length} bytes`);
  }
  block.set(bytes, offset);
}

function putOctal(block: Uint8Array, offset: number, length: number, value: number): void {
  putString(block, offset, length, value.toString(8).padStart(length - 1, "0") + "\0");
}

function bodyOf(entry: RawEntry): Uint8Array {
  const body = entry.body ?? new Uint8Array();
  return typeof body === "string" ? encoder.encode(body) : body;
}

/** Builds the 512-byte ustar header of one entry. */
export function tarHeader(entry: RawEntry): Uint8Array {
  const type = entry.type ?? "file";
  const block = new Uint8Array(512);
  putString(block, 0, 100, entry.path);
  putOctal(block, 100, 8, entry.mode ?? (type === "dir" ? 0o755 : 0o644));
  putOctal(block, 108, 8, entry.uid ?? 0);
  putOctal(block, 116, 8, entry.gid ?? 0);
  putOctal(block, 124, 12, type === "file" ? bodyOf(entry).length : 0);
  putOctal(block, 136, 12, 1_700_000_000);
  putString(block, 156, 1, TYPE_FLAGS[type]);
  putString(block, 157, 100, entry.linkpath ?? "");
  putString(block, 257, 6, "ustar\0");
  putString(block, 263, 2, "00");
  // The checksum is computed with its own field read as eight spaces.
  block.fill(0x20, 148, 156);
  const sum = block.reduce((total, byte) => total + byte, 0);
  putString(block, 148, 8, sum.toString(8).padStart(6, "0") + "\0 ");
  return block;
}

/** Builds a whole uncompressed archive, end-of-archive blocks included. */
export function rawTar(entries: RawEntry[]): Uint8Array {
  const parts: Uint8Array[] = [];
  for (const entry of entries) {
    parts.push(tarHeader(entry));
    if ((entry.type ?? "file") === "file") {
      const body = bodyOf(entry);
      const padded = new Uint8Array(Math.ceil(body.length / 512) * 512);
      padded.set(body);
      parts.push(padded);
    }
  }
  parts.push(new Uint8Array(1024));
  const out = new Uint8Array(parts.reduce((total, part) => total + part.length, 0));
  let offset = 0;
  for (const part of parts) {
    out.set(part, offset);
    offset += part.length;
  }
  return out;
}

/** Builds a gzip-compressed archive. */
export function rawTarGz(entries: RawEntry[]): Uint8Array {
  return new Uint8Array(gzipSync(rawTar(entries)));
}

/** Hex sha256 of some bytes. */
export function sha256Hex(bytes: Uint8Array): string {
  return createHash("sha256").update(bytes).digest("hex");
}

/** A stream delivering `bytes` in chunks of `chunkSize`. */
export function streamOf(bytes: Uint8Array, chunkSize = 16 * 1024): ReadableStream<Uint8Array> {
  let offset = 0;
  return new ReadableStream({
    pull(controller) {
      if (offset >= bytes.length) {
        controller.close();
        return;
      }
      controller.enqueue(bytes.slice(offset, offset + chunkSize));
      offset += chunkSize;
    },
  });
}
