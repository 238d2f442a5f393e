/**
 * Port 5000: the attach handshake and what `--attach-info` prints.
 * @module
 */
/** Longest secret line the agent accepts, newline included. */
export const ATTACH_MAX_LINE = 256;
/** Time a client has to send its secret line. */
export const ATTACH_HANDSHAKE_TIMEOUT_MS = 10_000;
/** Default attach window: how long an attached run waits for its client. */
export const ATTACH_WINDOW_MS = 60_000;
/** Default idle timeout of an attached session. */
export const IDLE_TIMEOUT_MS = 30 * 60_000;
/** Default time a framed session's process waits for its client to come back. */
export const REATTACH_GRACE_MS = 2 * 60_000;

/** The one line the agent writes before closing a refused attach. */
export function attachRefusal(reason: string): string {
  return `oneoff: ${reason}\r\n`;
}

/** What `oneoff run --attach-info` prints and what the run API returns. */
export interface AttachInfo {
  run: string;
  app: string;
  host: string;
  port: number;
  tls: boolean;
  /** SHA-256 fingerprint (hex) of the agent's certificate, for pinning. */
  tls_fingerprint?: string;
  secret: string;
  expires_at: string;
}

/** Refusal reasons, as written after `oneoff: ` on the wire. */
export const ATTACH_REFUSALS = {
  timeout: "timed out waiting for the secret",
  tooLong: "secret line too long",
  noNewline: "secret line must end with a newline",
  unknown: "unknown secret",
  used: "secret already used",
  expired: "attach window expired",
  limited: "too many failed attempts, try again later",
  takenOver: "the session was attached from another terminal",
  wrongLine: "secret given in the wrong kind of handshake line",
} as const;

/** One refusal reason. */
export type AttachRefusal = typeof ATTACH_REFUSALS[keyof typeof ATTACH_REFUSALS];

/**
 * The fingerprint the CLI pins: SHA-256 of the certificate's DER bytes, as
 * lowercase hex without colons (what `openssl x509 -fingerprint -sha256`
 * prints, less the colons and the case).
 */
export async function certificateFingerprint(der: Uint8Array): Promise<string> {
  // WebCrypto, not node:crypto: loading node:crypto adds tens of
  // milliseconds to every CLI start that imports the protocol.
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", new Uint8Array(der)));
  return Array.from(digest, (b) => b.toString(16).padStart(2, "0")).join("");
}

/** The {@link certificateFingerprint} of the first certificate of a PEM text. */
export function pemFingerprint(pem: string): Promise<string> {
  const match = /-----BEGIN CERTIFICATE-----([^-]*)-----END CERTIFICATE-----/.exec(pem);
  if (match === null) {
    throw new Error('Cannot fingerprint certificate: no "BEGIN CERTIFICATE" block in the PEM text');
  }
  let der: Uint8Array;
  try {
    der = Uint8Array.from(atob((match[1] ?? "").replace(/\s+/g, "")), (c) => c.charCodeAt(0));
  } catch (cause) {
    throw new Error("Cannot fingerprint certificate: the PEM block is not base64", { cause });
  }
  return certificateFingerprint(der);
}
