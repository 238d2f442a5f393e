/**
 * Run artifacts: the files a run leaves in `/tmp/downloads` when it ends,
 * kept by the server. What a kept name may be (both the agent, before it
 * sends a file, and the server, before it stores one, check it), the
 * limits, the agent's upload paths and what the API shows.
 * @module
 */
import {
  array,
  check,
  type Decoder,
  decodeValue,
  type Decoding,
  object,
  string,
} from "./_decode.ts";

/** Where a run leaves the files to keep, inside its sandbox. */
export const DOWNLOADS_DIR = "/tmp/downloads";
/** Bytes of artifacts one run may leave, unless the server says otherwise (1 GiB). */
export const DEFAULT_ARTIFACT_MAX_BYTES = 1024 * 1024 * 1024;
/** Files one run may leave: more are refused (each named). */
export const MAX_ARTIFACTS_PER_RUN = 1000;
/** Longest kept name, in UTF-8 bytes. */
export const MAX_ARTIFACT_NAME_BYTES = 200;
/** Header of an artifact upload: the sha256 the agent computed while it read the file. */
export const ARTIFACT_SHA256_HEADER = "x-oneoff-sha256";

/** The agent's upload of one file: `PUT` the bytes (its own credential as bearer). */
export function agentArtifactPath(runId: string, name: string): string {
  return `/agent/runs/${encodeURIComponent(runId)}/artifacts/${encodeURIComponent(name)}`;
}

/** The agent's report of what it refused, once every file is sent: `POST` {@link ArtifactsDone}. */
export function agentArtifactsDonePath(runId: string): string {
  return `/agent/runs/${encodeURIComponent(runId)}/artifacts-done`;
}

/** One file the agent did not keep, and why (its name as {@link quoteName} shows it). */
export interface ArtifactRefusal {
  name: string;
  reason: string;
}

/** Body of the agent's report once a run's files are sent. */
export interface ArtifactsDone {
  refused: ArtifactRefusal[];
}

const refusal: Decoder<ArtifactRefusal> = check(
  object({ name: string, reason: string }),
  (r) => r.name.length <= 300 && r.reason.length <= 500 || "is longer than a refusal may be",
);
const artifactsDone: Decoder<ArtifactsDone> = object({
  refused: check(
    array(refusal),
    (list) => list.length <= MAX_ARTIFACTS_PER_RUN || "lists more files than a run may leave",
  ),
});

/** Checks the agent's {@link ArtifactsDone}; the error names what was wrong. */
export function decodeArtifactsDone(body: unknown): Decoding<ArtifactsDone> {
  return decodeValue(artifactsDone, body);
}

// Control characters, C1 controls, the replacement character (a name that
// was not UTF-8) and the bidirectional overrides that make a name read as
// another in a terminal.
// deno-lint-ignore no-control-regex
const ODD = /[\u0000-\u001f\u007f-\u009f\ufffd\u200e\u200f\u202a-\u202e\u2066-\u2069]/u;

/**
 * Why a file name may not be kept as an artifact, or null when it may: one
 * path component (no `/`, `\`, not `.` or `..`), no control or odd
 * characters, at most {@link MAX_ARTIFACT_NAME_BYTES} bytes.
 */
export function artifactNameProblem(name: string): string | null {
  if (name === "") return "the name is empty";
  if (name === "." || name === "..") return "the name is a path, not a file name";
  if (name.includes("/") || name.includes("\\")) return "the name holds a path separator";
  if (ODD.test(name)) return "the name holds control or invisible characters, or is not UTF-8";
  if (new TextEncoder().encode(name).length > MAX_ARTIFACT_NAME_BYTES) {
    return `the name is longer than ${MAX_ARTIFACT_NAME_BYTES} bytes`;
  }
  return null;
}

/** A name as a message may quote it: escaped so that no control character reaches a terminal. */
export function quoteName(name: string): string {
  const quoted = JSON.stringify(name).replace(
    /[\u007f-\u009f\ufffd\u200e\u200f\u202a-\u202e\u2066-\u2069]/gu,
    (c) => `\\u${c.codePointAt(0)!.toString(16).padStart(4, "0")}`,
  );
  return quoted.length > MAX_ARTIFACT_NAME_BYTES + 2
    ? quoted.slice(0, MAX_ARTIFACT_NAME_BYTES) + '…"'
    : quoted;
}

/** A run's artifact as the API shows it: a kept file, or a refused one (`refused` says why). */
export interface ArtifactInfo {
  name: string;
  /** Null for a refused file. */
  sha256: string | null;
  size: number;
  /** Why the file was not kept; null when it was. */
  refused: string | null;
  created_at: string;
}

/** `GET /apps/:app/runs/:run/artifacts`. */
export interface ArtifactsReply {
  run: string;
  artifacts: ArtifactInfo[];
}

/** How many files of a run were kept (and their bytes) and refused: what `ps` shows. */
export interface ArtifactSummary {
  files: number;
  bytes: number;
  refused: number;
}
