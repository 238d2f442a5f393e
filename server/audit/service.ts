/**
 * The audit store: chunks from the agents are encrypted under the current
 * key and chained before they reach the database; reading decrypts and
 * verifies them. Plaintext is never stored.
 * @module
 */
import { isTerminal } from "../../protocol/mod.ts";
import type { Store } from "../store/mod.ts";
import { MISSING_HASH, payloadHash, seal, ZERO_HASH } from "./_crypto.ts";
import { type Keyring, loadKeyring, rotateKey } from "./keyring.ts";
import { type AuditReadout, verifyRecording } from "./verify.ts";

// Runs whose last stored chunk is remembered, to chain the next without a read.
const MAX_REMEMBERED = 1000;

/** Stores and reads audit recordings with the keys of one key file. */
export class AuditService {
  #store: Store;
  #keyFile: string;
  #keyring: Promise<Keyring> | null = null;
  #last = new Map<string, { seq: number; hash: string }>();
  #queues = new Map<string, Promise<void>>();

  /** Uses `keyFile` (created on first use when missing); `open` loads it up front. */
  constructor(store: Store, keyFile: string) {
    this.#store = store;
    this.#keyFile = keyFile;
  }

  /** Creates the service and loads (or creates) its key file, so that a bad file fails at start. */
  static async open(store: Store, keyFile: string): Promise<AuditService> {
    const service = new AuditService(store, keyFile);
    await service.#keys();
    return service;
  }

  /** Encrypts and stores chunk `seq` of a run; a chunk already stored is ignored. */
  receive(runId: string, seq: number, data: string): Promise<void> {
    if (!Number.isSafeInteger(seq) || seq < 0) {
      return Promise.reject(new Error(`Invalid audit chunk number "${seq}" for run "${runId}"`));
    }
    // Chunks of one run are chained, so they are stored one after the other.
    const previous = this.#queues.get(runId) ?? Promise.resolve();
    const next = previous.then(() => this.#put(runId, seq, data));
    const tail = next.catch(() => {});
    this.#queues.set(runId, tail);
    tail.then(() => {
      if (this.#queues.get(runId) === tail) this.#queues.delete(runId);
    });
    return next;
  }

  async #put(runId: string, seq: number, data: string): Promise<void> {
    const last = this.#last.get(runId);
    let prevHash: string;
    if (seq === 0) {
      prevHash = ZERO_HASH;
    } else if (last?.seq === seq - 1) {
      prevHash = last.hash;
    } else {
      const rows = await this.#store.auditChunks(runId);
      if (rows.some((row) => row.seq === seq)) return;
      const prev = rows.find((row) => row.seq === seq - 1);
      // It should not happen (agents send in order); the reader reports it.
      prevHash = prev ? await payloadHash(prev.payload) : MISSING_HASH;
    }
    const keyring = await this.#keys();
    const key = keyring.keys.get(keyring.current)!;
    const payload = await seal(key, { runId, seq, prevHash }, data);
    const stored = await this.#store.putAuditChunk({
      run_id: runId,
      seq,
      key_id: keyring.current,
      payload,
      prev_hash: prevHash,
      at: new Date(),
    });
    this.#last.delete(runId);
    // A duplicate's stored payload is not this one: forget, read it when needed.
    if (!stored) return;
    this.#last.set(runId, { seq, hash: await payloadHash(payload) });
    if (this.#last.size > MAX_REMEMBERED) this.#last.delete(this.#last.keys().next().value!);
  }

  /** Decrypts and verifies a run's recording; throws only when the store or key file fails. */
  async read(runId: string): Promise<AuditReadout> {
    const [run, rows] = await Promise.all([
      this.#store.runById(runId),
      this.#store.auditChunks(runId),
    ]);
    let keyring = await this.#keys();
    // Another server may have rotated the key file since it was loaded.
    if (rows.some((row) => !keyring.keys.has(row.key_id))) keyring = await this.#reload();
    const recorded = run === null ? rows.length > 0 : run.attached && run.started_at !== null;
    return await verifyRecording(runId, rows, keyring, {
      recorded,
      running: run !== null && !isTerminal(run.state),
    });
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
