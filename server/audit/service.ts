/**
 * The audit store: chunks from the agents are encrypted under the current
 * key and chained before they reach the database; reading decrypts and
 * verifies them. Plaintext is never stored.
 * @module
 */
import { DEFAULT_AUDIT_QUOTA_BYTES, isTerminal } from "../../protocol/mod.ts";
import type { Logger } from "../../util/log.ts";
import type { Store } from "../store/mod.ts";
import { MISSING_HASH, payloadHash, seal, ZERO_HASH } from "./_crypto.ts";
import { auditLimit, charge, cut, emptyFinal, maxSeq } from "./_quota.ts";
import { type Keyring, loadKeyring, rotateKey } from "./keyring.ts";
import {
  type AuditReadout,
  type AuditRecording,
  type ChunkData,
  openChunk,
  openRecording,
} from "./verify.ts";

// Runs whose last stored chunk and quota use are remembered, to go on without a read.
const MAX_REMEMBERED = 1000;
// Chunks read at once: a chunk may hold a few MB of ciphertext.
const PAGE_CHUNKS = 2;

/** One chunk read as it arrived, for a live watcher: its data, or null when it cannot be read. */
export interface LiveChunk {
  seq: number;
  data: ChunkData | null;
}

/** What an {@link AuditService} is set up with. */
export interface AuditOptions {
  /** Recorded bytes of a session stored at most (default `DEFAULT_AUDIT_QUOTA_BYTES`). */
  quotaBytes?: number;
  /** Where refused chunks are said. */
  log?: Logger;
}

/** What the stored chunks of a run were charged, and what happened past the limit. */
interface Usage {
  used: number;
  /** A chunk was cut or refused: later ones are refused. */
  over: boolean;
  finalStored: boolean;
}

/** Stores and reads audit recordings with the keys of one key file. */
export class AuditService {
  #store: Store;
  #keyFile: string;
  #keyring: Promise<Keyring> | null = null;
  #last = new Map<string, { seq: number; hash: string }>();
  #usage = new Map<string, Usage>();
  #queues = new Map<string, Promise<void>>();
  #quota: number;
  #log: Logger | undefined;

  /** Uses `keyFile` (created on first use when missing); `open` loads it up front. */
  constructor(store: Store, keyFile: string, options: AuditOptions = {}) {
    this.#store = store;
    this.#keyFile = keyFile;
    this.#quota = options.quotaBytes ?? DEFAULT_AUDIT_QUOTA_BYTES;
    this.#log = options.log;
  }

  /** Creates the service and loads (or creates) its key file, so that a bad file fails at start. */
  static async open(
    store: Store,
    keyFile: string,
    options: AuditOptions = {},
  ): Promise<AuditService> {
    const service = new AuditService(store, keyFile, options);
    await service.#keys();
    return service;
  }

  /**
   * Encrypts and stores chunk `seq` of a run; a chunk already stored is
   * ignored. With the run's `timeoutMs`, a seq no recorder reaches in that
   * long is refused like a chunk past the quota (see `_quota.ts`).
   */
  receive(
    runId: string,
    seq: number,
    data: string,
    options: { timeoutMs?: number } = {},
  ): Promise<void> {
    if (!Number.isSafeInteger(seq) || seq < 0) {
      return Promise.reject(new Error(`Invalid audit chunk number "${seq}" for run "${runId}"`));
    }
    // Chunks of one run are chained, so they are stored one after the other.
    const previous = this.#queues.get(runId) ?? Promise.resolve();
    const next = previous.then(() => this.#put(runId, seq, data, options.timeoutMs));
    const tail = next.catch(() => {});
    this.#queues.set(runId, tail);
    tail.then(() => {
      if (this.#queues.get(runId) === tail) this.#queues.delete(runId);
    });
    return next;
  }

  async #put(runId: string, seq: number, data: string, timeoutMs?: number): Promise<void> {
    const last = this.#last.get(runId);
    let prevHash: string;
    if (seq === 0) {
      prevHash = ZERO_HASH;
    } else if (last?.seq === seq - 1) {
      prevHash = last.hash;
    } else {
      if (await this.#store.auditChunk(runId, seq) !== null) return;
      const prev = await this.#store.auditChunk(runId, seq - 1);
      // It should not happen (agents send in order); the reader reports it.
      prevHash = prev ? await payloadHash(prev.payload) : MISSING_HASH;
    }
    const within = await this.#withinQuota(runId, seq, data, timeoutMs);
    if (within === null) return;
    const keyring = await this.#keys();
    const key = keyring.keys.get(keyring.current)!;
    const payload = await seal(key, { runId, seq, prevHash }, within.data);
    const stored = await this.#store.putAuditChunk({
      run_id: runId,
      seq,
      key_id: keyring.current,
      payload,
      prev_hash: prevHash,
      at: new Date(),
    }, { bytes: within.cost });
    this.#last.delete(runId);
    // A duplicate's stored payload is not this one: forget, read it when needed.
    if (!stored) return;
    within.commit();
    this.#last.set(runId, { seq, hash: await payloadHash(payload) });
    if (this.#last.size > MAX_REMEMBERED) this.#last.delete(this.#last.keys().next().value!);
  }

  // What of a chunk may be stored, or null when nothing (it is then acknowledged, not stored).
  async #withinQuota(
    runId: string,
    seq: number,
    data: string,
    timeoutMs?: number,
  ): Promise<{ data: string; cost: number; commit(): void } | null> {
    let usage = this.#usage.get(runId);
    const limit = auditLimit(this.#quota);
    if (usage === undefined) {
      const used = await this.#store.auditRecordedBytes(runId);
      usage = { used, over: used >= limit, finalStored: false };
      this.#usage.set(runId, usage);
      if (this.#usage.size > MAX_REMEMBERED) this.#usage.delete(this.#usage.keys().next().value!);
    }
    const u = usage;
    const charged = charge(data);
    const seqOk = timeoutMs === undefined || seq <= maxSeq(timeoutMs, this.#quota);
    if (!u.over && seqOk && u.used + charged.cost <= limit) {
      return { data, cost: charged.cost, commit: () => u.used += charged.cost };
    }
    const log = this.#log?.child("audit");
    if (!u.over && seqOk && charged.chunk !== null) {
      const room = limit - u.used;
      log?.warn("a session's recording went past its quota: cut, and the rest refused", {
        run: runId,
        seq,
        quotaBytes: this.#quota,
      });
      return {
        data: cut(charged.chunk, room, this.#quota),
        cost: room,
        commit: () => {
          u.used += room;
          u.over = true;
        },
      };
    }
    const final = emptyFinal(charged.chunk);
    if (final !== null && !u.finalStored) {
      return { data: final, cost: 0, commit: () => u.finalStored = true };
    }
    if (!u.over) {
      log?.warn("a session's recording went past its quota: the rest refused", {
        run: runId,
        seq,
        quotaBytes: this.#quota,
      });
    }
    u.over = true;
    return null;
  }

  /** Decrypts and verifies a run's recording, held whole: for small ones; see `open`. */
  async read(runId: string): Promise<AuditReadout> {
    const recording = await this.open(runId);
    const events = [];
    for await (const event of recording.events()) events.push(event);
    const { size, t0, final, problems } = recording;
    return { events, size, t0, final, problems };
  }

  /**
   * Checks a run's recording, a page of chunks at a time; its events are
   * read again when asked for, so memory stays the same whatever its length.
   * Throws only when the store or key file fails.
   */
  async open(runId: string): Promise<AuditRecording> {
    const [run, first] = await Promise.all([
      this.#store.runById(runId),
      this.#store.auditChunkPage(runId, { after: -1, limit: 1 }),
    ]);
    const recorded = run === null ? first.length > 0 : run.attached && run.started_at !== null;
    return await openRecording(runId, {
      page: (after) => this.#store.auditChunkPage(runId, { after, limit: PAGE_CHUNKS }),
      keyring: await this.#keys(),
      reload: () => this.#reload(),
    }, { recorded, running: run !== null && !isTerminal(run.state) });
  }

  /**
   * The chunks stored with a seq above `after`, a page of them, each
   * decrypted under the link it was stored with: what a live watcher is
   * shown next. The chain is not checked here; `open` (the replay) does.
   */
  async chunksAfter(runId: string, after: number): Promise<LiveChunk[]> {
    const rows = await this.#store.auditChunkPage(runId, { after, limit: PAGE_CHUNKS });
    let keyring = await this.#keys();
    const chunks: LiveChunk[] = [];
    for (const row of rows) {
      // Another server may have rotated the key file since it was loaded.
      if (!keyring.keys.has(row.key_id)) keyring = await this.#reload();
      const opened = await openChunk(runId, row, row.prev_hash, keyring);
      chunks.push({ seq: row.seq, data: opened.status === "ok" ? opened.data : null });
    }
    return chunks;
  }

  /** The highest seq stored of a run's recording, -1 when none is. */
  lastSeq(runId: string): Promise<number> {
    return this.#store.lastAuditSeq(runId);
  }

  /**
   * Adds a new key to the key file and encrypts new chunks with it; older keys
   * stay. With an actor, the rotation goes on the timeline. Returns the new key's id.
   */
  async rotateKey(options: { actor?: string } = {}): Promise<string> {
    const id = await rotateKey(this.#keyFile);
    await this.#reload();
    if (options.actor !== undefined) {
      await this.#store.addEvent({
        app_id: null,
        app_name: null,
        actor: options.actor,
        kind: "audit.key_rotated",
        data: { key: id },
      });
    }
    return id;
  }

  #keys(): Promise<Keyring> {
    if (this.#keyring === null) {
      const loading = loadKeyring(this.#keyFile);
      this.#keyring = loading;
      // A failed load is tried again on the next call rather than remembered.
      loading.catch(() => {
        if (this.#keyring === loading) this.#keyring = null;
      });
    }
    return this.#keyring;
  }

  #reload(): Promise<Keyring> {
    this.#keyring = null;
    return this.#keys();
  }
}
