/**
 * The agent's cache of extracted slugs. Layout under the cache dir:
 *
 *   <sha256>/root/       the slug, mounted read-only at /app by the sandbox
 *   <sha256>/meta.json   {"size": N}; the dir's mtime is its last use
 *   .tmp/                extractions in progress and evicted slugs being removed
 *
 * A slug appears under its sha only by one rename of a fully extracted and
 * verified dir, so a crash never leaves a half-extracted slug that looks
 * valid; `.tmp` is wiped when the cache starts.
 * @module
 */

import { absolutePath } from "../util/path.ts";
import { extractSlug, SlugRejectedError } from "./_slug_extract.ts";
import { type Clock, realClock } from "../util/clock.ts";

export { SlugRejectedError };

/** How a SlugCache is set up. */
export interface SlugCacheOptions {
  /** Cache root (agent data dir/slugs). */
  dir: string;
  /** LRU budget over extracted sizes. */
  maxDiskBytes: number;
  /** Idle slugs unused for this long go even under the budget (default 7 days). */
  maxIdleMs?: number;
  /** Time for last uses and the idle sweep; real by default. */
  clock?: Clock;
  /** Cap on the total extracted size of one slug (its uncompressed tar). */
  maxExtractBytes: number;
  /** Downloads a slug from the server. */
  fetch: (sha256: string) => Promise<ReadableStream<Uint8Array>>;
  /**
   * Who owns the extracted files. The agent gives the sandbox's uid, so a
   * run may change its (throwaway) copy of `/app` as a Heroku dyno can.
   */
  owner?: { uid: number; gid: number };
}

/** A slug held for one run; `release()` once the run has ended. */
export interface SlugLease {
  /** The extracted tree, readable by any uid, writable by none but the agent's. */
  dir: string;
  /** Lets the slug be evicted again; calling it twice does nothing more. */
  release(): void;
}

interface Entry {
  size: number;
  usedAt: number;
  leases: number;
}

const SHA256 = /^[0-9a-f]{64}$/;

/** Extracted slugs on disk, shared by concurrent runs and evicted least recently used first. */
export class SlugCache {
  #options: SlugCacheOptions;
  #dir: string;
  #entries = new Map<string, Entry>();
  #clock: Clock;
  #loading = new Map<string, Promise<void>>();
  #removing = new Map<string, Promise<void>>();
  #ready: Promise<void> | undefined;
  #lastStamp = 0;
  #downloads = 0;
  #extractions = 0;

  constructor(options: SlugCacheOptions) {
    this.#options = options;
    this.#clock = options.clock ?? realClock;
    this.#dir = absolutePath(options.dir);
  }

  /**
   * Returns the dir of the extracted slug, downloading (sha256 verified) and
   * extracting it only if it is not cached; concurrent calls for one sha
   * share one download. Marks it used and evicts the least recently used
   * slugs not in use beyond maxDiskBytes. Throws SlugRejectedError for a bad
   * slug.
   */
  async acquire(sha256: string): Promise<SlugLease> {
    if (!SHA256.test(sha256)) throw new Error(`Invalid slug sha256 "${sha256}"`);
    await this.#scanned();
    for (;;) {
      const entry = this.#entries.get(sha256);
      if (entry !== undefined) return await this.#lease(sha256, entry);
      const pending = this.#removing.get(sha256) ?? this.#loading.get(sha256);
      if (pending !== undefined) {
        await pending;
        continue;
      }
      const loading = this.#load(sha256).finally(() => this.#loading.delete(sha256));
      this.#loading.set(sha256, loading);
      await loading;
    }
  }

  /** Counters for tests and benchmarks. */
  stats(): { downloads: number; extractions: number } {
    return { downloads: this.#downloads, extractions: this.#extractions };
  }

  /** Bytes of the extracted slugs kept, for metrics. */
  bytes(): number {
    let bytes = 0;
    for (const entry of this.#entries.values()) bytes += entry.size;
    return bytes;
  }

  async #lease(sha256: string, entry: Entry): Promise<SlugLease> {
    entry.leases++;
    entry.usedAt = this.#stamp();
    let released = false;
    const lease = {
      dir: `${this.#dir}/${sha256}/root`,
      release: () => {
        if (released) return;
        released = true;
        entry.leases--;
      },
    };
    try {
      // The mtime carries the LRU order across agent restarts.
      await Deno.utime(`${this.#dir}/${sha256}`, new Date(), new Date(entry.usedAt));
      await this.#evict();
    } catch (error) {
      lease.release();
      throw error;
    }
    return lease;
  }

  /** Strictly increasing milliseconds, so uses in the same millisecond keep their order. */
  #stamp(): number {
    this.#lastStamp = Math.max(this.#clock.now(), this.#lastStamp + 1);
    return this.#lastStamp;
  }

  async #load(sha256: string): Promise<void> {
    const dir = this.#dir;
    const temp = await Deno.makeTempDir({ dir: `${dir}/.tmp`, prefix: `${sha256.slice(0, 12)}-` });
    try {
      await Deno.mkdir(`${temp}/root`);
      this.#downloads++;
      const body = await this.#options.fetch(sha256);
      this.#extractions++;
      const size = await extractSlug(body, `${temp}/root`, {
        sha256,
        maxBytes: this.#options.maxExtractBytes,
        ...(this.#options.owner ? { owner: this.#options.owner } : {}),
      });
      await Deno.writeTextFile(`${temp}/meta.json`, JSON.stringify({ size }));
      await Deno.chmod(temp, 0o755);
      await Deno.rename(temp, `${dir}/${sha256}`);
      this.#entries.set(sha256, { size, usedAt: this.#stamp(), leases: 0 });
    } catch (error) {
      await Deno.remove(temp, { recursive: true }).catch(() => {});
      throw error;
    }
  }

  /**
   * Removes the slugs nobody holds that were last used longer ago than
   * `maxIdleMs` (old releases no run asks for any more); returns how many.
   */
  async sweepIdle(): Promise<number> {
    await this.#scanned();
    const before = this.#clock.now() - (this.#options.maxIdleMs ?? 7 * 86_400_000);
    return await this.#removeIdle((_, usedAt) => usedAt < before);
  }

  #scanned(): Promise<void> {
    // A failed scan (say, a permission error) is retried by the next call.
    this.#ready ??= this.#scan().catch((error) => {
      this.#ready = undefined;
      throw error;
    });
    return this.#ready;
  }

  /** Removes least recently used slugs nobody holds until the cache fits its budget. */
  async #evict(): Promise<void> {
    let total = 0;
    for (const entry of this.#entries.values()) total += entry.size;
    if (total <= this.#options.maxDiskBytes) return;
    await this.#removeIdle((size) => {
      if (total <= this.#options.maxDiskBytes) return false;
      total -= size;
      return true;
    });
  }

  // Removes idle slugs, least recently used first, while `take` says so.
  async #removeIdle(take: (size: number, usedAt: number) => boolean): Promise<number> {
    const idle = [...this.#entries].filter(([, entry]) => entry.leases === 0)
      .sort(([, a], [, b]) => a.usedAt - b.usedAt);
    const removals: Promise<void>[] = [];
    for (const [sha256, entry] of idle) {
      if (!take(entry.size, entry.usedAt)) continue;
      this.#entries.delete(sha256);
      const removal = this.#remove(sha256, entry).finally(() => this.#removing.delete(sha256));
      this.#removing.set(sha256, removal);
      removals.push(removal);
    }
    await Promise.all(removals);
    return removals.length;
  }

  /**
   * Never throws: a slug that cannot be moved stays cached, and a tree left
   * in `.tmp` is wiped on the next start. A run must not fail over cleanup.
   */
  async #remove(sha256: string, entry: Entry): Promise<void> {
    // Out of the way in one rename first, so a new download never meets a half-removed tree.
    const trash = `${this.#dir}/.tmp/evicted-${sha256}-${crypto.randomUUID()}`;
    try {
      await Deno.rename(`${this.#dir}/${sha256}`, trash);
    } catch {
      this.#entries.set(sha256, entry);
      return;
    }
    await Deno.remove(trash, { recursive: true }).catch(() => {});
  }

  /** Picks up the slugs a previous agent left, and wipes its unfinished work. */
  async #scan(): Promise<void> {
    const dir = this.#dir;
    await Deno.mkdir(dir, { recursive: true });
    // The sandbox's uid must traverse to the slug.
    await Deno.chmod(dir, 0o755);
    await Deno.remove(`${dir}/.tmp`, { recursive: true }).catch((error) => {
      if (!(error instanceof Deno.errors.NotFound)) throw error;
    });
    await Deno.mkdir(`${dir}/.tmp`, { mode: 0o700 });
    const found: Array<[string, Entry]> = [];
    for await (const item of Deno.readDir(dir)) {
      if (!item.isDirectory || !SHA256.test(item.name)) continue;
      const entry = await readEntry(`${dir}/${item.name}`);
      if (entry === undefined) {
        await Deno.remove(`${dir}/${item.name}`, { recursive: true });
      } else {
        found.push([item.name, entry]);
      }
    }
    for (const [sha256, entry] of found.sort(([, a], [, b]) => a.usedAt - b.usedAt)) {
      entry.usedAt = Math.max(entry.usedAt, this.#lastStamp + 1);
      this.#lastStamp = entry.usedAt;
      this.#entries.set(sha256, entry);
    }
  }
}

/** Reads what a previous agent recorded about one slug; undefined if it is not usable. */
async function readEntry(path: string): Promise<Entry | undefined> {
  try {
    const meta: unknown = JSON.parse(await Deno.readTextFile(`${path}/meta.json`));
    const size = (meta as { size?: unknown } | null)?.size;
    const info = await Deno.stat(`${path}/root`);
    if (typeof size !== "number" || !info.isDirectory) return undefined;
    const { mtime } = await Deno.stat(path);
    return { size, usedAt: mtime?.getTime() ?? 0, leases: 0 };
  } catch {
    return undefined;
  }
}
