/**
 * The runs of one agent: the table of {@link OneOff}s by id, the outbox of
 * state changes the server has not received yet, the log shippers whose
 * batches await acks (of live runs, ended ones and an earlier agent
 * process's), the book of ends awaiting `state_ack`, what a reconnect sends
 * again, and the drain of a stopping agent.
 * @module
 */
import type { ArtifactSink } from "./artifacts.ts";
import type { AgentMessage, RunSpec } from "../protocol/mod.ts";
import { type Clock, realClock, type TimerId } from "../util/clock.ts";
import type { Logger } from "../util/log.ts";
import { LogShipper, type LogShipperOptions, SpoolBudget } from "./log_shipper.ts";
import type { Outcomes } from "./outcomes.ts";
import type { Recorder, RecoveredChunks } from "./recorder.ts";
import { type AttachWaiter, type Ending, OneOff, type RunHost, type WatcherChange } from "./run.ts";
import type { Sandbox } from "./sandbox/mod.ts";
import { RunSpool } from "./spool.ts";
import type { SlugCache } from "./slug_cache.ts";

/** The reason given to a run placed on an agent that is stopping. */
export const SHUTTING_DOWN_REASON = "The agent is shutting down";

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
  /** Where runs' artifacts go; absent: `/tmp/downloads` is not kept. */
  artifacts?: ArtifactSink;
  /** Scratch space for uploads. */
  workDir: string;
  /** Spool of audit chunks not yet stored by the server. */
  auditDir: string;
  /** Chunks an earlier agent process left in the spool. */
  leftovers?: RecoveredChunks;
  /** Ends not yet acknowledged by the server, on disk. */
  outcomes: Outcomes;
  /** Spool of detached output not yet stored by the server (`<logDir>/<runId>/<batch>.json`); memory only when absent. */
  logDir?: string;
  /** The bound on spooled log bytes over all runs (default a 1 GiB one). */
  budget?: SpoolBudget;
  /** Log spools an earlier agent process left, to deliver (see `LogShipper.recover`). */
  logLeftovers?: RunSpool[];
  /** First resend of an unacknowledged log batch (default 5 s). */
  logResendMs?: number;
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
  /** Log shippers with batches still owed: live runs, ended ones, leftovers. */
  #shippers = new Map<string, LogShipper>();
  #budget: SpoolBudget;
  #draining = false;
  #idle: (() => void)[] = [];

  constructor(deps: RunnerDeps) {
    this.#deps = deps;
    this.#host = {
      sandbox: deps.sandbox,
      slugs: deps.slugs,
      listener: deps.listener,
      fetchBlob: deps.fetchBlob,
      ...(deps.artifacts ? { artifacts: deps.artifacts } : {}),
      workDir: deps.workDir,
      auditDir: deps.auditDir,
      record: deps.record !== false,
      stopGraceMs: deps.stopGraceMs ?? 10_000,
      clock: deps.clock ?? realClock,
      log: deps.log,
      send: (msg) => deps.send(msg),
      report: (msg) => this.#report(msg),
      outcome: (ended) => deps.outcomes.ended(ended),
      shipper: (runId, quotaBytes) => this.#shipper(runId, quotaBytes),
      ended: (run) => this.#ended(run),
    };
    this.#budget = deps.budget ?? new SpoolBudget(1024 ** 3, deps.log);
    for (const spool of deps.logLeftovers ?? []) {
      const shipper = LogShipper.recover(spool, deps.send, this.#shipperOptions());
      if (!shipper.done) this.#shippers.set(spool.runId, shipper);
    }
  }

  #shipperOptions(): LogShipperOptions {
    const deps = this.#deps;
    return {
      clock: this.#host.clock,
      budget: this.#budget,
      ...(deps.logResendMs !== undefined ? { resendMs: deps.logResendMs } : {}),
      onError: (err) =>
        deps.log.error("log spool failed: the batch is kept in memory", {
          error: err instanceof Error ? err.message : String(err),
        }),
    };
  }

  #shipper(runId: string, quotaBytes: number | undefined): LogShipper {
    const { logDir } = this.#deps;
    const shipper = new LogShipper(runId, (msg) => this.#deps.send(msg), {
      ...this.#shipperOptions(),
      ...(quotaBytes !== undefined ? { quotaBytes } : {}),
      ...(logDir ? { spool: new RunSpool(logDir, runId) } : {}),
    });
    this.#shippers.set(runId, shipper);
    return shipper;
  }

  /** Ids of the runs this agent has. */
  running(): string[] {
    return [...this.#runs.keys()];
  }

  /** The channel is back: send what could not be sent, and unacknowledged logs. */
  reconnected(): void {
    if (this.#draining) this.#deps.send({ type: "draining" });
    for (const msg of this.#outbox.splice(0)) this.#report(msg);
    for (const shipper of this.#shippers.values()) shipper.resend();
    // A restarted server has forgotten which attached runs wait for their client.
    for (const run of this.#runs.values()) run.reconnected();
    for (const recorder of this.#recorders.values()) recorder.resend();
    this.#deps.leftovers?.resend();
  }

  /** The server could not store an audit chunk of the run: its unacknowledged chunks go again later. */
  nackAudit(runId: string): void {
    this.#host.clock.setTimeout(() => {
      const recorder = this.#runs.get(runId)?.recorder ?? this.#recorders.get(runId);
      if (recorder) recorder.resend();
      else this.#deps.leftovers?.resend();
    }, this.#deps.logResendMs ?? 5_000);
  }

  /** The server stored every audit chunk of the run up to `seq`. */
  ackAudit(runId: string, seq: number): void {
    const recorder = this.#runs.get(runId)?.recorder ?? this.#recorders.get(runId);
    if (recorder) recorder.ack(seq);
    else this.#deps.leftovers?.ack(runId, seq);
  }

  /** The server committed log batch `batch` of a run. */
  ackLogs(runId: string, batch: number): void {
    const shipper = this.#shippers.get(runId);
    if (!shipper) return;
    shipper.ack(batch);
    if (shipper.done) this.#shippers.delete(runId);
  }

  /** The server could not store log batch `batch` of a run: it is sent again later. */
  nackLogs(runId: string, batch: number): void {
    this.#shippers.get(runId)?.nack(batch);
  }

  /** Starts a run placed on this agent; while draining, it ends `failed` at once. */
  start(spec: RunSpec): void {
    // Already here, or already ended (a repeated start_run): nothing to do again.
    if (this.#runs.has(spec.runId) || this.#deps.outcomes.has(spec.runId)) return;
    if (this.#draining) {
      this.#deps.outcomes.ended({
        runId: spec.runId,
        state: "failed",
        reason: SHUTTING_DOWN_REASON,
        at: this.#host.clock.now(),
        ...(spec.attach ? {} : { lines: 0 }),
      });
      return;
    }
    this.#deps.outcomes.started(spec.runId);
    const run = new OneOff(spec, this.#host);
    this.#runs.set(spec.runId, run);
    run.prepare();
  }

  /** True while the agent is stopping. */
  get draining(): boolean {
    return this.#draining;
  }

  /**
   * The agent is stopping: no run is taken any more, runs waiting for their
   * client end at once, the others may finish for `timeoutMs`, then are
   * stopped (SIGTERM, SIGKILL after the grace). Resolves once every run has
   * ended and reported it.
   */
  async drain(timeoutMs: number): Promise<void> {
    this.#draining = true;
    this.#deps.send({ type: "draining" });
    for (const run of this.#runs.values()) if (run.waiting) run.shutdown();
    const { clock } = this.#host;
    let timer: TimerId | undefined;
    const timedOut = new Promise<void>((resolve) => timer = clock.setTimeout(resolve, timeoutMs));
    await Promise.race([this.#whenIdle(), timedOut]);
    clock.clearTimeout(timer);
    if (this.#runs.size === 0) return;
    this.#deps.log.warn("drain timeout: stopping the runs still running", {
      runs: this.#runs.size,
    });
    for (const run of this.#runs.values()) run.shutdown();
    await this.#whenIdle();
  }

  #whenIdle(): Promise<void> {
    if (this.#runs.size === 0) return Promise.resolve();
    return new Promise((resolve) => this.#idle.push(resolve));
  }

  /** Resolves once every log batch is acknowledged, or after `timeoutMs`; true when all were. */
  async logsDelivered(timeoutMs: number): Promise<boolean> {
    const { clock } = this.#host;
    let timer: TimerId | undefined;
    const all = Promise.all([...this.#shippers.values()].map((s) => s.finish())).then(() => true);
    const late = new Promise<boolean>((resolve) =>
      timer = clock.setTimeout(() => resolve(false), timeoutMs)
    );
    const done = await Promise.race([all, late]);
    clock.clearTimeout(timer);
    return done;
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

  /** Who watches a run's attached session: see `OneOff.watchers`. */
  watchers(runId: string, count: number, change: WatcherChange): void {
    this.#runs.get(runId)?.watchers(count, change);
  }

  /** Lets another terminal reattach to a run's framed session with a one-use secret. */
  reattach(runId: string, secretSha256: string, expiresAt: number): void {
    this.#runs.get(runId)?.reattach(secretSha256, expiresAt);
  }

  #ended(run: OneOff): void {
    const { runId } = run.spec;
    this.#runs.delete(runId);
    if (this.#shippers.get(runId)?.done) this.#shippers.delete(runId);
    if (this.#runs.size === 0) { for (const wake of this.#idle.splice(0)) wake(); }
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

  /** Kills every run (the agent is stopping); what is unacknowledged stays on disk. */
  async close(): Promise<void> {
    await Promise.all([...this.#runs.values()].map((run) => run.kill()));
    for (const shipper of this.#shippers.values()) shipper.close();
    this.#deps.outcomes.close();
  }
}
