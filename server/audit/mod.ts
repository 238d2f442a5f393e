/**
 * Audit recordings on the server: the key file, encrypted storage with a
 * hash chain, verification on read, and rendering for people.
 * @module
 */
export { type AuditOptions, AuditService, type LiveChunk } from "./service.ts";
export { EscapingDecoder } from "./_display.ts";
export { type Keyring, loadKeyring, rotateKey } from "./keyring.ts";
export {
  type AuditEvent,
  type AuditReadout,
  type AuditRecording,
  type TermSize,
} from "./verify.ts";
export {
  type CastMeta,
  type DisplayEvent,
  displayEvents,
  streamAsciicast,
  streamDisplayEvents,
  streamEventsJson,
  streamTranscript,
  toAsciicast,
  toTranscript,
} from "./render.ts";
