/**
 * The keys every server of one store must share: the audit keys (a server
 * must read what the others recorded), the session-signing key (a cookie
 * signed by one is checked by another), the attach key (a repeated run
 * creation gets its secret back from any) and the join token. Each is
 * kept as a check value in the store, an HMAC of a fixed label under the
 * key, never the key: a server whose key gives another check refuses to
 * start, naming the key and how to share it.
 * @module
 */
import { createHmac } from "node:crypto";
import { basename } from "node:path";
import type { Cluster } from "./cluster/mod.ts";

const LABEL = "oneoff shared key check v1";

/** A key to check: its name in the store, the file an operator copies, its bytes. */
export interface SharedKey {
  name: string;
  file: string;
  key: string | Uint8Array;
}

/** The check value of a key: safe to store, useless to recover the key from. */
export function keyCheckValue(key: string | Uint8Array): string {
  return createHmac("sha256", key).update(LABEL).digest("hex");
}

/** Thrown when this server's key differs from the one the other servers use. */
export class KeyMismatchError extends Error {
  /** Names the key and the file to copy. */
  constructor(message: string) {
    super(message);
    this.name = "KeyMismatchError";
  }
}

/**
 * Records each key's check on first start, and refuses (throws) a key that
 * differs from the recorded one; `prefix` names a family of keys of which
 * this server must hold every one recorded (the audit keys).
 */
export async function checkSharedKeys(
  cluster: Cluster,
  keys: SharedKey[],
  families: { prefix: string; file: string }[] = [],
): Promise<void> {
  if (!cluster.shared) return;
  for (const { name, file, key } of keys) {
    const stored = await cluster.keyCheck(name, keyCheckValue(key));
    if (stored !== keyCheckValue(key)) throw mismatch(name, file, "differs from");
  }
  const have = new Set(keys.map((k) => k.name));
  for (const name of (await cluster.keyChecks()).keys()) {
    const family = families.find((f) => name.startsWith(f.prefix));
    if (family && !have.has(name)) throw mismatch(name, family.file, "is missing from");
  }
}

function mismatch(name: string, file: string, how: string): KeyMismatchError {
  return new KeyMismatchError(
    `Cannot start: the ${name} ${how} this server's "${file}" and the one the other servers ` +
      `of this database use: copy "${basename(file)}" from a running server's data dir ` +
      `(the same file on every server, see docs/install.md "Several servers")`,
  );
}

/** The keys of an audit key file, by id, as `audit key <id>` (read after the service made it). */
export async function auditKeys(path: string): Promise<SharedKey[]> {
  const file = JSON.parse(await Deno.readTextFile(path)) as { keys: Record<string, string> };
  return Object.entries(file.keys).map(([id, key]) => ({
    name: `audit key ${id}`,
    file: path,
    key: Uint8Array.fromBase64(key),
  }));
}
