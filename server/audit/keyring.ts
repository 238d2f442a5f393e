/**
 * The audit key file: AES-256 keys kept outside the database, one of them
 * current. Created with one fresh key when missing; rotation adds a key and
 * keeps the old ones so that older recordings stay readable.
 * @module
 */
import { dirname } from "node:path";

/** The key file as stored on disk. */
export interface KeyFile {
  /** Id of the key new chunks are encrypted with. */
  current: string;
  /** Key id → base64 of 32 random bytes. */
  keys: Record<string, string>;
}

/** The keys of a key file, imported for AES-GCM. */
export interface Keyring {
  /** Id of the key new chunks are encrypted with. */
  current: string;
  /** Every key of the file by id. */
  keys: ReadonlyMap<string, CryptoKey>;
}

const KEY_ID = /^[A-Za-z0-9._-]{1,64}$/;

/** Reads the key file at `path`, creating it with one fresh key if it does not exist. */
export async function loadKeyring(path: string): Promise<Keyring> {
  let file = await readKeyFile(path);
  if (file === null) {
    await createKeyFile(path, { current: "k1", keys: { k1: freshKey() } });
    file = await readKeyFile(path);
    if (file === null) throw new Error(`Cannot create audit key file "${path}"`);
  }
  const keys = new Map<string, CryptoKey>();
  for (const [id, encoded] of Object.entries(file.keys)) {
    keys.set(id, await importKey(Uint8Array.fromBase64(encoded)));
  }
  return { current: file.current, keys };
}

/** Adds a new key to the file and makes it current; returns its id. */
export async function rotateKey(path: string): Promise<string> {
  const file = await readKeyFile(path);
  if (file === null) throw new Error(`Cannot rotate audit keys: key file "${path}" does not exist`);
  let n = Object.keys(file.keys).length + 1;
  for (const id of Object.keys(file.keys)) {
    const match = /^k(\d+)$/.exec(id);
    if (match) n = Math.max(n, Number(match[1]) + 1);
  }
  const id = `k${n}`;
  await writeAtomic(path, { current: id, keys: { ...file.keys, [id]: freshKey() } });
  return id;
}

function freshKey(): string {
  return crypto.getRandomValues(new Uint8Array(32)).toBase64();
}

function importKey(raw: Uint8Array<ArrayBuffer>): Promise<CryptoKey> {
  return crypto.subtle.importKey("raw", raw, "AES-GCM", false, ["encrypt", "decrypt"]);
}

// Null when the file does not exist; throws for anything else wrong with it.
async function readKeyFile(path: string): Promise<KeyFile | null> {
  let text: string;
  let mode: number | null;
  try {
    text = await Deno.readTextFile(path);
    mode = (await Deno.stat(path)).mode;
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return null;
    throw new Error(`Cannot read audit key file "${path}"`, { cause: error });
  }
  if (mode !== null && (mode & 0o077) !== 0) {
    const shown = (mode & 0o777).toString(8).padStart(4, "0");
    throw new Error(
      `Audit key file "${path}" is open to other users (mode ${shown}): run chmod 600 "${path}"`,
    );
  }
  return parseKeyFile(path, text);
}

function parseKeyFile(path: string, text: string): KeyFile {
  const invalid = (why: string) =>
    new Error(
      `Audit key file "${path}" is invalid: ${why}; ` +
        `expected {"current":"k1","keys":{"k1":"<base64 of 32 bytes>"}}`,
    );
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    throw invalid("it is not JSON");
  }
  const { current, keys } = (parsed ?? {}) as Record<string, unknown>;
  if (typeof keys !== "object" || keys === null || Array.isArray(keys)) {
    throw invalid(`"keys" is not an object`);
  }
  const checked: Record<string, string> = {};
  for (const [id, value] of Object.entries(keys)) {
    if (!KEY_ID.test(id)) {
      throw invalid(`key id "${id}" has characters other than A-Z a-z 0-9 . _ -`);
    }
    if (typeof value !== "string" || !isKey(value)) {
      throw invalid(`key "${id}" is not the base64 of 32 bytes`);
    }
    checked[id] = value;
  }
  if (typeof current !== "string" || !(current in checked)) {
    throw invalid(`"current" does not name one of its keys`);
  }
  return { current, keys: checked };
}

function isKey(value: string): boolean {
  try {
    return Uint8Array.fromBase64(value).length === 32;
  } catch {
    return false;
  }
}

// Two servers starting at once may both create the file: linking the
// finished temp file fails for the second, which then reads the first's.
async function createKeyFile(path: string, file: KeyFile): Promise<void> {
  await Deno.mkdir(dirname(path), { recursive: true, mode: 0o700 });
  const temp = await writeTemp(path, file);
  try {
    await Deno.link(temp, path);
  } catch (error) {
    if (!(error instanceof Deno.errors.AlreadyExists)) {
      throw new Error(`Cannot create audit key file "${path}"`, { cause: error });
    }
  } finally {
    await Deno.remove(temp).catch(() => {});
  }
}

// Temp file + rename: a crash never leaves a half-written key file.
async function writeAtomic(path: string, file: KeyFile): Promise<void> {
  const temp = await writeTemp(path, file);
  try {
    await Deno.rename(temp, path);
  } catch (error) {
    await Deno.remove(temp).catch(() => {});
    throw new Error(`Cannot write audit key file "${path}"`, { cause: error });
  }
}

async function writeTemp(path: string, file: KeyFile): Promise<string> {
  const temp = `${path}.${crypto.randomUUID()}.tmp`;
  const bytes = new TextEncoder().encode(JSON.stringify(file, null, 2) + "\n");
  try {
    using handle = await Deno.open(temp, { write: true, createNew: true, mode: 0o600 });
    // The umask cannot widen 0600, but a default ACL on the folder might.
    await Deno.chmod(temp, 0o600);
    let offset = 0;
    while (offset < bytes.length) offset += await handle.write(bytes.subarray(offset));
    await handle.sync();
  } catch (error) {
    await Deno.remove(temp).catch(() => {});
    throw new Error(`Cannot write audit key file "${path}"`, { cause: error });
  }
  return temp;
}
