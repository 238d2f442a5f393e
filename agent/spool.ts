/**
 * A durable spool: what the agent must not lose before the server has
 * stored it, kept on disk as numbered records, one folder per run:
 *
 *   <dir>/<runId>/<seq>.json        one record, written whole or not at all
 *   <dir>/<runId>/<seq>.json.tmp    a record being written
 *
 * A record is any string (the audit recorder's chunks today; detached log
 * batches can use the same). Writing is synchronous: awaited file operations
 * took milliseconds each here while sockets were busy (see
 * util/file_batcher.ts), which held a 1 GiB recorded session to ~70 MiB/s;
 * a record of at most a few hundred KiB written synchronously takes well
 * under a millisecond. Acknowledged records are deleted at once.
 * @module
 */

/** The run ids a spool accepts as folder names. */
const RUN_ID = /^[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}$/;
const RECORD = /^(\d{1,15})\.json(\.tmp)?$/;

/** True when `runId` can name a spool folder. */
export function isSpoolRunId(runId: string): boolean {
  return RUN_ID.test(runId);
}

/** One run's records on disk, in order; see the module documentation. */
export class RunSpool {
  /** The run the records belong to. */
  readonly runId: string;
  /** The run's folder, `<dir>/<runId>`. */
  readonly dir: string;
  #seqs: number[];
  #dirMade: boolean;

  /** A run's spool under `dir`; `seqs` are records already on disk (see {@link recoverSpools}). */
  constructor(dir: string, runId: string, seqs: number[] = []) {
    if (!isSpoolRunId(runId)) throw new Error(`Cannot spool run "${runId}": not a valid run id`);
    this.runId = runId;
    this.dir = `${dir}/${runId}`;
    this.#seqs = [...seqs].sort((a, b) => a - b);
    this.#dirMade = seqs.length > 0;
  }

  /** Numbers of the records on disk, ascending. */
  get seqs(): readonly number[] {
    return this.#seqs;
  }

  /** Writes record `seq` (higher than any before); throws when the disk refuses it. */
  write(seq: number, data: string): void {
    if (!this.#dirMade) {
      Deno.mkdirSync(this.dir, { recursive: true, mode: 0o700 });
      this.#dirMade = true;
    }
    const path = this.#path(seq);
    // Renamed into place: a crash never leaves a half-written record under its name.
    Deno.writeTextFileSync(`${path}.tmp`, data, { mode: 0o600 });
    Deno.renameSync(`${path}.tmp`, path);
    this.#seqs.push(seq);
  }

  /** Reads record `seq` back; null once it is gone (acknowledged meanwhile) or unreadable. */
  async read(seq: number): Promise<string | null> {
    return await Deno.readTextFile(this.#path(seq)).catch(() => null);
  }

  /** Reads record `seq` back at once (see the module documentation on why sync); null once it is gone. */
  readSync(seq: number): string | null {
    try {
      return Deno.readTextFileSync(this.#path(seq));
    } catch {
      return null;
    }
  }

  /** Bytes of record `seq` on disk, 0 when it is gone. */
  sizeOf(seq: number): number {
    try {
      return Deno.statSync(this.#path(seq)).size;
    } catch {
      return 0;
    }
  }

  /** The server stored record `seq` alone (log batches are acknowledged one by one): its file goes. */
  drop(seq: number): void {
    const at = this.#seqs.indexOf(seq);
    if (at === -1) return;
    this.#seqs.splice(at, 1);
    removeQuietly(this.#path(seq));
  }

  /** The server stored every record up to `seq`: their files go. */
  ack(seq: number): void {
    while (this.#seqs.length > 0 && this.#seqs[0]! <= seq) {
      removeQuietly(this.#path(this.#seqs.shift()!));
    }
  }

  /** Removes the run's folder if no record is left in it. */
  remove(): void {
    if (this.#seqs.length === 0) {
      removeQuietly(this.dir);
      this.#dirMade = false;
    }
  }

  #path(seq: number): string {
    return `${this.dir}/${seq}.json`;
  }
}

/** How {@link recoverSpools} tells a whole record from a partial one. */
export interface RecoverOptions {
  /** True when a `.tmp` file holds a whole record (default: it parses as JSON). */
  isWhole?: (data: string) => boolean;
}

/**
 * On agent start: the spools that earlier runs or crashes left under `dir`,
 * each with its records in order. A temp file that holds a whole record (a
 * crash between write and rename) counts; a partial one is dropped, as that
 * record was never sent. Empty folders are removed.
 */
export async function recoverSpools(
  dir: string,
  options: RecoverOptions = {},
): Promise<RunSpool[]> {
  const isWhole = options.isWhole ?? isJson;
  const spools: RunSpool[] = [];
  for (
    const runId of await listDir(dir, (entry) => entry.isDirectory && isSpoolRunId(entry.name))
  ) {
    const seqs = await recordFiles(`${dir}/${runId}`, isWhole);
    if (seqs.length > 0) spools.push(new RunSpool(dir, runId, seqs));
    else await Deno.remove(`${dir}/${runId}`).catch(() => {});
  }
  return spools;
}

async function recordFiles(runDir: string, isWhole: (data: string) => boolean): Promise<number[]> {
  const seqs: number[] = [];
  for (const name of await listDir(runDir, (entry) => entry.isFile)) {
    const match = RECORD.exec(name);
    if (match === null) continue;
    const seq = Number(match[1]);
    if (match[2] !== undefined) {
      const path = `${runDir}/${name}`;
      const data = await Deno.readTextFile(path).catch(() => null);
      if (data === null || !isWhole(data) || seqs.includes(seq)) {
        await Deno.remove(path).catch(() => {});
        continue;
      }
      await Deno.rename(path, `${runDir}/${seq}.json`);
    }
    if (!seqs.includes(seq)) seqs.push(seq);
  }
  return seqs.sort((a, b) => a - b);
}

async function listDir(dir: string, keep: (entry: Deno.DirEntry) => boolean): Promise<string[]> {
  const names: string[] = [];
  try {
    for await (const entry of Deno.readDir(dir)) if (keep(entry)) names.push(entry.name);
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound)) throw error;
  }
  return names;
}

function isJson(data: string): boolean {
  try {
    JSON.parse(data);
    return true;
  } catch {
    return false;
  }
}

function removeQuietly(path: string): void {
  try {
    Deno.removeSync(path);
  } catch {
    // Already gone, or the spool is unwritable: recovery at the next start deals with leftovers.
  }
}
