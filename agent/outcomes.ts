/**
 * How runs ended, kept on the agent's disk until the server confirms it
 * (`state_ack`), so that no outage turns a run that ended cleanly into
 * `lost`:
 *
 *   <dataDir>/started/<runId>       the run was placed on this agent
 *   <dataDir>/ended/<runId>.json    its end, as reported (a RunEnded)
 *
 * Both go once the server acknowledges the end. An end is sent when it is
 * written, in the `hello` of every reconnect, and again on a timer (with
 * backoff) until acknowledged. A run that an earlier agent process started
 * and that has no end on disk died with that process: the next start gives
 * it one, `failed` with {@link INTERRUPTED_REASON}.
 * @module
 */
import type { AgentMessage, RunEnded } from "../protocol/mod.ts";
import { type Clock, realClock, type TimerId } from "../util/clock.ts";
import { isSpoolRunId } from "./spool.ts";

/** The reason given to a run whose agent process died under it. */
export const INTERRUPTED_REASON = "The agent stopped while the run was running";
/** An unacknowledged end is sent again this long after it was sent (doubling each time). */
export const OUTCOME_RESEND_MS = 5_000;
const MAX_BACKOFF_MS = 60_000;

/** How the outcome book is set up. */
export interface OutcomesOptions {
  /** Sends to the server; false when the channel is down. */
  send(msg: AgentMessage): boolean;
  clock?: Clock;
  /** First resend of an unacknowledged end (default 5 s). */
  resendMs?: number;
  /** What else an interrupted run's end says, after INTERRUPTED_REASON (e.g. its artifacts were lost); null: nothing. */
  interruptedNote?: (runId: string) => string | null;
}

interface Owed {
  ended: RunEnded;
  sentAt: number | null;
  sends: number;
}

/** The ends not yet confirmed by the server; see the module documentation. */
export class Outcomes {
  readonly #endedDir: string | null;
  readonly #startedDir: string | null;
  #send: (msg: AgentMessage) => boolean;
  #clock: Clock;
  #resendMs: number;
  #owed = new Map<string, Owed>();
  #timer: TimerId | undefined;
  #settled: (() => void)[] = [];
  #closed = false;

  private constructor(dataDir: string | null, options: OutcomesOptions) {
    this.#endedDir = dataDir === null ? null : `${dataDir}/ended`;
    this.#startedDir = dataDir === null ? null : `${dataDir}/started`;
    this.#send = options.send;
    this.#clock = options.clock ?? realClock;
    this.#resendMs = options.resendMs ?? OUTCOME_RESEND_MS;
  }

  /**
   * Reads what an earlier agent process left under `dataDir`. `interrupted`
   * are the runs it started that never ended (their sandboxes died with it):
   * they get a `failed` end now.
   */
  static async open(
    dataDir: string,
    options: OutcomesOptions,
  ): Promise<{ outcomes: Outcomes; started: string[]; interrupted: string[] }> {
    const book = new Outcomes(dataDir, options);
    const endedDir = `${dataDir}/ended`;
    const startedDir = `${dataDir}/started`;
    await Deno.mkdir(endedDir, { recursive: true, mode: 0o700 });
    await Deno.mkdir(startedDir, { recursive: true, mode: 0o700 });
    for await (const entry of Deno.readDir(endedDir)) {
      const path = `${endedDir}/${entry.name}`;
      const ended = entry.name.endsWith(".json")
        ? await Deno.readTextFile(path).then(parseEnded, () => null)
        : null;
      // A half-written `.tmp` (a crash mid-write) is dropped; its started marker still stands.
      if (ended === null) await Deno.remove(path).catch(() => {});
      else book.#owed.set(ended.runId, { ended, sentAt: null, sends: 0 });
    }
    const started: string[] = [];
    for await (const entry of Deno.readDir(startedDir)) {
      if (isSpoolRunId(entry.name)) started.push(entry.name);
    }
    const interrupted = started.filter((runId) => !book.#owed.has(runId));
    for (const runId of interrupted) {
      const note = options.interruptedNote?.(runId);
      const reason = note ? `${INTERRUPTED_REASON}; ${note}` : INTERRUPTED_REASON;
      book.ended({ runId, state: "failed", reason, at: book.#clock.now() });
    }
    return { outcomes: book, started, interrupted };
  }

  /** A book kept in memory only (tests of the runner). */
  static inMemory(options: OutcomesOptions): Outcomes {
    return new Outcomes(null, options);
  }

  /** Marks a run as placed here, before anything of it starts. */
  started(runId: string): void {
    if (this.#startedDir === null) return;
    try {
      Deno.writeTextFileSync(`${this.#startedDir}/${runId}`, "", { mode: 0o600 });
    } catch {
      // A full disk: the run still runs; only a crash of this agent would leave it unreported.
    }
  }

  /** Records a run's end on disk, then sends it. Synchronous, as spool writes are. */
  ended(ended: RunEnded): void {
    const path = `${this.#endedDir}/${ended.runId}.json`;
    try {
      if (this.#endedDir === null) throw new Error("In memory");
      Deno.writeTextFileSync(`${path}.tmp`, JSON.stringify(ended), { mode: 0o600 });
      Deno.renameSync(`${path}.tmp`, path);
    } catch {
      // A full disk: the end is kept in memory and sent all the same.
    }
    const owed: Owed = { ended, sentAt: null, sends: 0 };
    this.#owed.set(ended.runId, owed);
    this.#transmit(owed);
    this.#arm();
  }

  /** The server recorded the end of `runId`: it is forgotten. */
  ack(runId: string): void {
    this.#owed.delete(runId);
    if (this.#endedDir !== null) removeQuietly(`${this.#endedDir}/${runId}.json`);
    if (this.#startedDir !== null) removeQuietly(`${this.#startedDir}/${runId}`);
    if (this.#owed.size > 0) return;
    this.#clock.clearInterval(this.#timer);
    this.#timer = undefined;
    for (const wake of this.#settled.splice(0)) wake();
  }

  /** The ends not acknowledged yet, for the hello. */
  pending(): RunEnded[] {
    return [...this.#owed.values()].map((owed) => owed.ended);
  }

  /** True while `runId` has an end the server has not acknowledged. */
  has(runId: string): boolean {
    return this.#owed.has(runId);
  }

  /** A hello carried every pending end: each counts as sent now. */
  sentInHello(): void {
    const now = this.#clock.now();
    for (const owed of this.#owed.values()) {
      owed.sentAt = now;
      owed.sends = Math.max(1, owed.sends);
    }
    this.#arm();
  }

  /** Resolves once every end is acknowledged, or after `timeoutMs`; true when all were. */
  async settled(timeoutMs: number): Promise<boolean> {
    if (this.#owed.size === 0) return true;
    let timer: TimerId | undefined;
    const all = await new Promise<boolean>((resolve) => {
      this.#settled.push(() => resolve(true));
      timer = this.#clock.setTimeout(() => resolve(false), timeoutMs);
    });
    this.#clock.clearTimeout(timer);
    return all;
  }

  /** Stops the resend timer; what is unacknowledged stays on disk for the next start. */
  close(): void {
    this.#closed = true;
    this.#clock.clearInterval(this.#timer);
    this.#timer = undefined;
  }

  #transmit(owed: Owed): boolean {
    let sent = false;
    try {
      sent = this.#send({ type: "run_state", ...owed.ended });
    } catch {
      sent = false;
    }
    owed.sentAt = sent ? this.#clock.now() : null;
    if (sent) owed.sends++;
    return sent;
  }

  #arm(): void {
    if (this.#closed || this.#timer !== undefined || this.#owed.size === 0) return;
    const every = Math.max(10, Math.min(1000, this.#resendMs / 4));
    this.#timer = this.#clock.setInterval(() => this.#due(), every);
  }

  #due(): void {
    const now = this.#clock.now();
    for (const owed of this.#owed.values()) {
      if (owed.sentAt !== null) {
        const wait = Math.min(this.#resendMs * 2 ** Math.max(0, owed.sends - 1), MAX_BACKOFF_MS);
        if (now - owed.sentAt < wait) continue;
      }
      if (!this.#transmit(owed)) break;
    }
  }
}

function parseEnded(text: string): RunEnded | null {
  try {
    const value = JSON.parse(text) as RunEnded;
    return typeof value.runId === "string" && isSpoolRunId(value.runId) &&
        typeof value.state === "string" && typeof value.at === "number"
      ? value
      : null;
  } catch {
    return null;
  }
}

function removeQuietly(path: string): void {
  try {
    Deno.removeSync(path);
  } catch {
    // Already gone.
  }
}
