/**
 * One run's `/tmp/downloads` on the agent: the host directory bound there
 * (named by the run, so that a restarted agent can tell whose files an
 * earlier process left), the watch that keeps it from filling the agent's
 * disk while the run runs, and the delivery of its files at the end.
 * @module
 */
import { DEFAULT_ARTIFACT_MAX_BYTES, DOWNLOADS_DIR } from "../protocol/mod.ts";
import type { Clock, TimerId } from "../util/clock.ts";
import { errorMessage } from "../util/log.ts";
import {
  type ArtifactFile,
  type ArtifactSink,
  deliverArtifacts,
  downloadsDir,
  downloadsUsage,
  leftArtifacts,
} from "./artifacts.ts";
import { SANDBOX_UID } from "./sandbox/mod.ts";

/** How often a running run's `/tmp/downloads` is measured. */
export const DOWNLOADS_CHECK_MS = 2_000;
/** Entries of a running run's `/tmp/downloads` (and below) past which it is stopped. */
export const DOWNLOADS_MAX_ENTRIES = 10_000;

/** A run's downloads directory; see the module documentation. */
export class RunDownloads {
  /** The host side of `/tmp/downloads`. */
  readonly dir: string;
  readonly #workDir: string;
  readonly #runId: string;
  readonly #maxBytes: number;
  #check: TimerId | undefined;

  private constructor(workDir: string, runId: string, maxBytes: number) {
    this.dir = downloadsDir(workDir, runId);
    this.#workDir = workDir;
    this.#runId = runId;
    this.#maxBytes = maxBytes;
  }

  /** Makes the (empty) directory, writable by the sandbox's user only. */
  static async make(
    workDir: string,
    runId: string,
    maxBytes = DEFAULT_ARTIFACT_MAX_BYTES,
  ): Promise<RunDownloads> {
    const downloads = new RunDownloads(workDir, runId, maxBytes);
    await Deno.remove(downloads.dir, { recursive: true }).catch(() => {});
    await Deno.mkdir(downloads.dir);
    await Deno.chmod(downloads.dir, 0o700);
    if (Deno.uid() === 0) await Deno.chown(downloads.dir, SANDBOX_UID, SANDBOX_UID);
    return downloads;
  }

  /**
   * The directory is on the agent's disk, not the run's size-limited tmpfs:
   * past twice the artifact limit (whose excess would be refused at the end
   * anyway) `stop` is called with the reason, before the disk fills.
   */
  watch(clock: Clock, stop: (reason: string) => void): void {
    const fuse = 2 * this.#maxBytes;
    let measuring = false;
    this.#check = clock.setInterval(() => {
      if (measuring) return;
      measuring = true;
      downloadsUsage(this.dir, DOWNLOADS_MAX_ENTRIES).then((used) => {
        if (used <= fuse) return;
        // Infinity: too many entries to measure, or one it cannot, whatever their bytes.
        if (used === Infinity) {
          return stop(
            `Stopped: ${DOWNLOADS_DIR} held more than ${DOWNLOADS_MAX_ENTRIES} files and directories, or a tree it cannot measure; it is not scratch space`,
          );
        }
        stop(
          `Stopped: ${DOWNLOADS_DIR} held more than ${fuse} bytes, twice the artifact limit of ${this.#maxBytes} bytes; it is not scratch space`,
        );
      }, () => {}).finally(() => measuring = false);
    }, DOWNLOADS_CHECK_MS);
  }

  /** Stops the watch. */
  unwatch(clock: Clock): void {
    clock.clearInterval(this.#check);
    this.#check = undefined;
  }

  /**
   * Sends the files (not when the agent is being `killed`: then only says
   * they were left), telling `sent` of each, and returns what the run's end
   * must say, or null.
   */
  async keep(
    sink: ArtifactSink,
    killed: boolean,
    sent: (file: ArtifactFile, ms: number) => void,
  ): Promise<string | null> {
    try {
      if (killed) return leftArtifacts(this.#workDir, this.#runId);
      return await deliverArtifacts(this.#runId, this.dir, {
        maxBytes: this.#maxBytes,
        sink,
        sent,
      });
    } catch (err) {
      return `artifacts: not kept: ${errorMessage(err)}`;
    }
  }

  /** Removes the directory and what is in it. */
  async remove(): Promise<void> {
    await Deno.remove(this.dir, { recursive: true }).catch(() => {});
  }
}
