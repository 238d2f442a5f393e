/**
 * Sealing one audit chunk: AES-256-GCM with a random 96-bit IV, bound to its
 * run, sequence number and chain link through the additional data.
 * @module
 */

/** The chain link of chunk 0. */
export const ZERO_HASH = "0".repeat(64);
/** The chain link of a chunk stored while its predecessor had not arrived. */
export const MISSING_HASH = "missing";

const IV_BYTES = 12;
const TAG_BYTES = 16;
const encoder = new TextEncoder();

/** Hex SHA-256 of a stored payload, the next chunk's `prev_hash`. */
export async function payloadHash(payload: string): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-256", encoder.encode(payload));
  return new Uint8Array(digest).toHex();
}

function additionalData(runId: string, seq: number, prevHash: string): Uint8Array<ArrayBuffer> {
  return encoder.encode(`${runId}:${seq}:${prevHash}`);
}

/** Encrypts a chunk's plaintext; returns base64(IV ‖ ciphertext). */
export async function seal(
  key: CryptoKey,
  at: { runId: string; seq: number; prevHash: string },
  plaintext: string,
): Promise<string> {
  const iv = crypto.getRandomValues(new Uint8Array(IV_BYTES));
  const sealed = await crypto.subtle.encrypt(
    { name: "AES-GCM", iv, additionalData: additionalData(at.runId, at.seq, at.prevHash) },
    key,
    encoder.encode(plaintext),
  );
  const payload = new Uint8Array(IV_BYTES + sealed.byteLength);
  payload.set(iv);
  payload.set(new Uint8Array(sealed), IV_BYTES);
  return payload.toBase64();
}

/** Decrypts a payload; null when it does not authenticate under this key and position. */
export async function unseal(
  key: CryptoKey,
  at: { runId: string; seq: number; prevHash: string },
  payload: string,
): Promise<string | null> {
  let bytes: Uint8Array<ArrayBuffer>;
  try {
    bytes = Uint8Array.fromBase64(payload);
  } catch {
    return null;
  }
  if (bytes.length < IV_BYTES + TAG_BYTES) return null;
  try {
    const plain = await crypto.subtle.decrypt(
      {
        name: "AES-GCM",
        iv: bytes.subarray(0, IV_BYTES),
        additionalData: additionalData(at.runId, at.seq, at.prevHash),
      },
      key,
      bytes.subarray(IV_BYTES),
    );
    return new TextDecoder("utf-8", { fatal: true }).decode(plain);
  } catch {
    return null;
  }
}
