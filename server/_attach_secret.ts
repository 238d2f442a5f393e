/**
 * Attach secrets derived from the run's id: HMAC-SHA256 under a key kept in
 * a file of the data dir. Only their hash is stored, yet a repeated run
 * creation (same `Idempotency-Key`) can give its caller the same secret
 * again, and a restarted server needs nothing from memory.
 * @module
 */
import { createHmac, randomBytes } from "node:crypto";

/** Derives attach secrets from run ids under one key. */
export class AttachSecrets {
  #path: string;
  #key: Promise<Uint8Array> | null = null;

  /** Keys are read from (or first written to, mode 0600) `path`. */
  constructor(path: string) {
    this.#path = path;
  }

  /** The secret of a run: 256 bits, base64url. */
  async secret(runId: string): Promise<string> {
    const key = await (this.#key ??= this.#load().catch((err) => {
      this.#key = null;
      throw err;
    }));
    return createHmac("sha256", key).update(`attach:${runId}`).digest("base64url");
  }

  async #load(): Promise<Uint8Array> {
    try {
      return hexKey(await Deno.readTextFile(this.#path), this.#path);
    } catch (err) {
      if (!(err instanceof Deno.errors.NotFound)) throw err;
    }
    const key = randomBytes(32).toString("hex");
    try {
      await Deno.writeTextFile(this.#path, key + "\n", { mode: 0o600, createNew: true });
    } catch (err) {
      // Another server on the same data dir wrote it first: use theirs.
      if (!(err instanceof Deno.errors.AlreadyExists)) throw err;
      return hexKey(await Deno.readTextFile(this.#path), this.#path);
    }
    return hexKey(key, this.#path);
  }
}

function hexKey(text: string, path: string): Uint8Array {
  const hex = text.trim();
  if (!/^[0-9a-f]{64}$/.test(hex)) {
    throw new Error(`Invalid attach key file "${path}": expected 64 hex digits`);
  }
  return Uint8Array.from(hex.match(/../g)!.map((byte) => parseInt(byte, 16)));
}
