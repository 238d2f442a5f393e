/**
 * A run's artifacts on the agent: what it left in `/tmp/downloads`, read
 * from the host directory bound there once the sandbox has exited (no
 * process of the run is left to change it), checked, and streamed to the
 * server file by file — the mirror of `run -f` uploads, in constant memory.
 *
 * Only regular files directly in the directory are kept: a directory, a
 * symbolic link (wherever it points), a FIFO, socket or device is refused
 * by its `lstat`, and nothing is followed. A hard link cannot reach
 * outside: `link(2)` across mounts fails (EXDEV), and `/tmp/downloads` is
 * its own mount; the file opened must also be the very inode `lstat` saw,
 * on the directory's own device. Every refusal is said, with its reason,
 * in the run's end state and its timeline.
 * @module
 */
import { createHash } from "node:crypto";
import {
  artifactNameProblem,
  type ArtifactRefusal,
  DOWNLOADS_DIR,
  MAX_ARTIFACTS_PER_RUN,
  quoteName,
} from "../protocol/mod.ts";

/** The host side of a run's `/tmp/downloads`, under the agent's work dir. */
export function downloadsDir(workDir: string, runId: string): string {
  return `${workDir}/downloads-${runId}`;
}

/** What an interrupted run's end says when an earlier agent process left files of it unsent; null when none. */
export function leftArtifacts(workDir: string, runId: string): string | null {
  try {
    for (const _ of Deno.readDirSync(downloadsDir(workDir, runId))) {
      return "artifacts: not kept: the agent stopped before they were sent";
    }
  } catch {
    // No directory: nothing was left.
  }
  return null;
}

/** A file that passed the checks, to send. */
export interface ArtifactFile {
  name: string;
  path: string;
  size: number;
  /** Its inode, which the opened file must still be. */
  ino: number;
  dev: number;
}

/** What a run left: the files to send, and what was refused. */
export interface Collected {
  files: ArtifactFile[];
  refused: ArtifactRefusal[];
}

/** Reads `dir` (the host side of `/tmp/downloads`) and checks every entry, keeping at most `maxBytes`. */
export async function collectArtifacts(dir: string, maxBytes: number): Promise<Collected> {
  const dirInfo = await Deno.lstat(dir);
  const names: string[] = [];
  for await (const entry of Deno.readDir(dir)) names.push(entry.name);
  names.sort();
  const files: ArtifactFile[] = [];
  const refused: ArtifactRefusal[] = [];
  let total = 0;
  for (const name of names) {
    const refuse = (reason: string) => refused.push({ name: quoteName(name), reason });
    const problem = artifactNameProblem(name);
    if (problem) {
      refuse(problem);
      continue;
    }
    const path = `${dir}/${name}`;
    const info = await Deno.lstat(path);
    if (info.isSymlink) refuse("a symbolic link: links are never followed");
    else if (info.isDirectory) {
      refuse(`a directory: only files directly in ${DOWNLOADS_DIR} are kept`);
    } else if (!info.isFile) refuse("not a regular file (a FIFO, socket or device)");
    else if (info.dev !== dirInfo.dev) refuse("on another file system");
    else if (files.length >= MAX_ARTIFACTS_PER_RUN) {
      refuse(`more than ${MAX_ARTIFACTS_PER_RUN} files: a run keeps at most that many`);
    } else if (total + info.size > maxBytes) {
      refuse(
        `${info.size} bytes: the run's files pass the server's limit of ${maxBytes} bytes (--max-artifact-bytes)`,
      );
    } else {
      total += info.size;
      files.push({ name, path, size: info.size, ino: info.ino ?? 0, dev: info.dev });
    }
  }
  return { files, refused };
}

/**
 * Bytes of the files in `dir` and below, by `lstat` (nothing followed), for
 * the watch that keeps a run from filling the agent's disk; Infinity past
 * `maxEntries` entries, which no run needs, and for an entry that cannot be
 * measured (a tree nested past PATH_MAX, where lstat fails): what is not
 * counted must not escape the limit.
 */
export async function downloadsUsage(dir: string, maxEntries = 10_000): Promise<number> {
  let total = 0;
  let entries = 0;
  const dirs = [dir];
  // Removed meanwhile (the run still runs): nothing to count.
  const gone = (error: unknown) => error instanceof Deno.errors.NotFound;
  while (dirs.length > 0) {
    const current = dirs.pop()!;
    try {
      for await (const entry of Deno.readDir(current)) {
        if (++entries > maxEntries) return Infinity;
        const path = `${current}/${entry.name}`;
        let info: Deno.FileInfo;
        try {
          info = await Deno.lstat(path);
        } catch (error) {
          if (gone(error)) continue;
          return Infinity;
        }
        if (info.isDirectory) dirs.push(path);
        else if (info.isFile) total += info.size;
      }
    } catch (error) {
      if (!gone(error)) return Infinity;
    }
  }
  return total;
}

/** Opens a collected file, refusing one that is no longer the inode that was checked. */
export async function openArtifact(file: ArtifactFile): Promise<Deno.FsFile> {
  const opened = await Deno.open(file.path, { read: true });
  const info = await opened.stat();
  if (!info.isFile || info.ino !== file.ino || info.dev !== file.dev) {
    opened.close();
    throw new ArtifactRefused("it changed after it was checked");
  }
  return opened;
}

/** The sha256 of a collected file, read once in constant memory. */
export async function hashArtifact(file: ArtifactFile): Promise<string> {
  const hash = createHash("sha256");
  const opened = await openArtifact(file);
  for await (const chunk of opened.readable) hash.update(chunk);
  return hash.digest("hex");
}

/** The server (or the file itself) refused a file for good: sending it again cannot help. */
export class ArtifactRefused extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "ArtifactRefused";
  }
}

/** Where an agent sends a run's artifacts (see `agent/mod.ts`). */
export interface ArtifactSink {
  /** Sends one file; throws ArtifactRefused when refused for good, another error when the server could not be reached. */
  put(runId: string, file: ArtifactFile): Promise<void>;
  /** Reports what was refused, once every file is sent. */
  done(runId: string, refused: ArtifactRefusal[]): Promise<void>;
  /** How long a file (or the report) is tried again when the server cannot be reached. */
  retryMs: number;
}

/** Since when the server could not be reached, shared by the sends of one delivery; null while it can. */
export interface Outage {
  since: number | null;
}

/**
 * Tries `send` until it succeeds, is refused for good, or the server has not
 * been reached for `retryMs` (backoff doubling to 10 s). The `outage` is
 * shared by a delivery's sends, so that a server away for good costs it
 * `retryMs` once, not once per file.
 */
export async function withRetry(
  send: () => Promise<void>,
  retryMs: number,
  outage: Outage = { since: null },
): Promise<void> {
  let wait = 250;
  for (;;) {
    try {
      await send();
      outage.since = null;
      return;
    } catch (err) {
      if (err instanceof ArtifactRefused) throw err;
      outage.since ??= Date.now();
      if (Date.now() + wait > outage.since + retryMs) throw err;
      await new Promise((resolve) => setTimeout(resolve, wait));
      wait = Math.min(wait * 2, 10_000);
    }
  }
}

/**
 * Sends what a run left in `dir` and returns the sentence for its end state
 * (null when there is nothing to say): every refusal, and every file the
 * server could not be reached for.
 */
export async function deliverArtifacts(
  runId: string,
  dir: string,
  options: {
    maxBytes: number;
    sink: ArtifactSink;
    /** Told each file sent: its size and how long it took (hash and upload). */
    sent?: (file: ArtifactFile, ms: number) => void;
  },
): Promise<string | null> {
  const { sink, maxBytes } = options;
  const { files, refused } = await collectArtifacts(dir, maxBytes);
  if (files.length === 0 && refused.length === 0) return null;
  const lost: string[] = [];
  const outage: Outage = { since: null };
  for (const file of files) {
    const started = performance.now();
    try {
      await withRetry(() => sink.put(runId, file), sink.retryMs, outage);
      options.sent?.(file, Math.round(performance.now() - started));
    } catch (err) {
      const reason = err instanceof Error ? err.message : String(err);
      if (err instanceof ArtifactRefused) refused.push({ name: quoteName(file.name), reason });
      else lost.push(`${quoteName(file.name)} not kept: ${reason}`);
    }
  }
  // The server takes a report of at most MAX_ARTIFACTS_PER_RUN refusals (a run
  // of thousands of files passes it): the rest are counted in the last one.
  if (refused.length > MAX_ARTIFACTS_PER_RUN) {
    const more = refused.length - (MAX_ARTIFACTS_PER_RUN - 1);
    refused.splice(MAX_ARTIFACTS_PER_RUN - 1, Infinity, {
      name: `(${more} more)`,
      reason:
        `and ${more} more files, not listed: a run's report names at most ${MAX_ARTIFACTS_PER_RUN}`,
    });
  }
  try {
    await withRetry(() => sink.done(runId, refused), sink.retryMs, outage);
  } catch (err) {
    lost.push(`the refusals could not be reported: ${err instanceof Error ? err.message : err}`);
  }
  const said = [
    ...refused.map((r) => `refused ${r.name}: ${r.reason}`),
    ...lost,
  ];
  return said.length > 0 ? `artifacts: ${said.join("; ")}` : null;
}
