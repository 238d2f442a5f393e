/**
 * The runs of one agent: the table of {@link OneOff}s by id, the outbox of
 * state changes the server has not received yet, and what a reconnect sends
 * again (unacknowledged logs and audit chunks, runs waiting for their client).
 * @module
 */
import type { AgentMessage, RunSpec } from "../protocol/mod.ts";
import { type Clock, realClock } from "../util/clock.ts";
import type { Logger } from "../util/log.ts";
import type { Recorder, RecoveredChunks } from "./recorder.ts";
import { type AttachWaiter, type Ending, OneOff, type RunHost } from "./run.ts";
import type { Sandbox } from "./sandbox/mod.ts";
import type { SlugCache } from "./slug_cache.ts";

/** How long an ended session's last audit chunks are waited for; the rest stays on disk. */
const RECORDING_WAIT_MS = 60_000;

/** What the run manager needs from the rest of the agent. */
export interface RunnerDeps {
  sandbox: Sandbox;
  slugs: Pick<SlugCache, "acquire">;
  listener: AttachWaiter;
  /** Sends to the server; false when the channel is down. */
  send(msg: AgentMessage): boolean;
  /** Downloads a blob (an upload) from the server. */
  fetchBlob(sha256: string): Promise<ReadableStream<Uint8Array>>;
  /** Scratch space for uploads. */
  workDir: string;
  /** Spool of audit chunks not yet stored by the server. */
  auditDir: string;
  /** Chunks an earlier agent process left in the spool. */
  leftovers?: RecoveredChunks;
  /** Record attached sessions (default true; false only to measure what recording costs). */
  record?: boolean;
  log: Logger;
  /** SIGTERM → SIGKILL grace period when stopping. */
  stopGraceMs?: number;
  /** Timers and time of the runs (default the real clock). */
  clock?: Clock;
}

/** Starts, watches and stops the runs placed on this agent. */
export class Runner {
  #deps: RunnerDeps;
  #host: RunHost;
  #runs = new Map<string, OneOff>();
  #outbox: AgentMessage[] = [];
  /** Recordings of ended sessions whose last chunks await the server's ack. */
  #recorders = new Map<string, Recorder>();

  constructor(deps: RunnerDeps) {
    this.#deps = deps;
    this.#host = {
      sandbox: deps.sandbox,
      slugs: deps.slugs,
      listener: deps.listener,
      fetchBlob: deps.fetchBlob,
      workDir: deps.workDir,
      auditDir: deps.auditDir,
      record: deps.record !== false,
      stopGraceMs: deps.stopGraceMs ?? 10_000,
      clock: deps.clock ?? realClock,
      log: deps.log,
      send: (msg) => deps.send(msg),
      report: (msg) => this.#report(msg),
      ended: (run) => this.#ended(run),
    };
  }

  /** Ids of the runs this agent has. */
  running(): string[] {
    return [...this.#runs.keys()];
  }

  /** The channel is back: send what could not be sent, and unacknowledged logs. */
  reconnected(): void {
    for (const msg of this.#outbox.splice(0)) this.#report(msg);
    // A restarted server has forgotten which attached runs wait for their client.
    for (const run of this.#runs.values()) run.reconnected();
    for (const recorder of this.#recorders.values()) recorder.resend();
    this.#deps.leftovers?.resend();
  }

  /** The server stored every audit chunk of the run up to `seq`. */
  ackAudit(runId: string, seq: number): void {
    const recorder = this.#runs.get(runId)?.recorder ?? this.#recorders.get(runId);
    if (recorder) recorder.ack(seq);
    else this.#deps.leftovers?.ack(runId, seq);
  }

  /** The server committed log batch `batch` of a run. */
  ackLogs(runId: string, batch: number): void {
    this.#runs.get(runId)?.ackLogs(batch);
  }

  /** Starts a run placed on this agent. */
  start(spec: RunSpec): void {
    if (this.#runs.has(spec.runId)) return;
    const run = new OneOff(spec, this.#host);
    this.#runs.set(spec.runId, run);
    run.prepare();
  }

  /** Stops a run: SIGTERM, then SIGKILL after the grace period. */
  stop(
    runId: string,
    state: Ending = "stopped",
    reason?: string,
    signal: Deno.Signal = "SIGTERM",
  ): void {
    this.#runs.get(runId)?.stop(state, reason, signal);
  }

  /** Resizes a TTY run's terminal. */
  resize(runId: string, cols: number, rows: number): void {
    this.#runs.get(runId)?.resize(cols, rows);
  }

  #ended(run: OneOff): void {
    const { runId } = run.spec;
    this.#runs.delete(runId);
    const recorder = run.recorder;
    if (!recorder) return;
    // Unacknowledged chunks stay spooled on disk: a later agent start delivers them.
    this.#recorders.set(runId, recorder);
    recorder.finish(RECORDING_WAIT_MS).finally(() => {
      if (this.#recorders.get(runId) === recorder) this.#recorders.delete(runId);
    });
  }

  #report(msg: AgentMessage): void {
    if (!this.#deps.send(msg)) this.#outbox.push(msg);
  }

  /** Kills every run (the agent is stopping). */
  async close(): Promise<void> {
    await Promise.all([...this.#runs.values()].map((run) => run.kill()));
  }
}
