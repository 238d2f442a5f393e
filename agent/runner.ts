/**
 * The runs of one agent: prepare the slug and uploads, wait for the
 * attached client or start at once, enforce the timeouts, stop, and report
 * every state change to the server.
 * @module
 */
import type { AgentMessage, RunSpec, RunState } from "../protocol/mod.ts";
import { errorMessage, type Logger } from "../util/log.ts";
import type { AttachedClient, AttachListener } from "./attach_listener.ts";
import { streamToFile } from "../util/file_batcher.ts";
import { LogShipper } from "./log_shipper.ts";
import { Recorder, type RecoveredChunks } from "./recorder.ts";
import type { ExitStatus, Sandbox, SandboxProcess } from "./sandbox/mod.ts";
import type { SlugCache } from "./slug_cache.ts";
import { pipeSession } from "./session.ts";

/** What the run manager needs from the rest of the agent. */
export interface RunnerDeps {
  sandbox: Sandbox;
  slugs: SlugCache;
  listener: AttachListener;
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
}

interface Run {
  spec: RunSpec;
  /** Why the agent is ending it, if it is. */
  ending?: "stopped" | "timed_out";
  endingReason?: string;
  process?: SandboxProcess;
  shipper?: LogShipper;
  recorder?: Recorder;
  /** An attached run whose secret the listener expects. */
  ready?: boolean;
  release?: () => void;
  uploadsDir?: string;
  timers: ReturnType<typeof setTimeout>[];
}

/** Starts, watches and stops the runs placed on this agent. */
export class Runner {
  #deps: RunnerDeps;
  #runs = new Map<string, Run>();
  #outbox: AgentMessage[] = [];
  /** Recorders of ended sessions whose last chunks await the server's ack. */
  #recorders = new Map<string, Recorder>();

  constructor(deps: RunnerDeps) {
    this.#deps = deps;
  }

  /** Ids of the runs this agent has. */
  running(): string[] {
    return [...this.#runs.keys()];
  }

  /** The channel is back: send what could not be sent, and unacknowledged logs. */
  reconnected(): void {
    for (const msg of this.#outbox.splice(0)) this.#report(msg);
    // A restarted server has forgotten which attached runs wait for their client.
    for (const run of this.#runs.values()) {
      if (run.spec.attach && run.ready && !run.process && !run.ending) {
        this.#report({
          type: "attach_ready",
          runId: run.spec.runId,
          expiresAt: run.spec.attach.expiresAt,
        });
      }
    }
    for (const run of this.#runs.values()) run.shipper?.resend();
    for (const recorder of this.#recorders.values()) recorder.resend();
    this.#deps.leftovers?.resend();
  }

  /** The server stored every audit chunk of the run up to `seq`. */
  ackAudit(runId: string, seq: number): void {
    const recorder = this.#recorders.get(runId);
    if (recorder) recorder.ack(seq);
    else this.#deps.leftovers?.ack(runId, seq);
  }

  /** The server acknowledged log lines up to `seq`. */
  ackLogs(runId: string, seq: number): void {
    this.#runs.get(runId)?.shipper?.ack(seq);
  }

  /** Starts a run placed on this agent. */
  start(spec: RunSpec): void {
    if (this.#runs.has(spec.runId)) return;
    const run: Run = { spec, timers: [] };
    this.#runs.set(spec.runId, run);
    this.#prepare(run).catch((err) => this.#finish(run, "failed", { reason: errorMessage(err) }));
  }

  /** Stops a run: SIGTERM, then SIGKILL after the grace period. */
  stop(
    runId: string,
    state: "stopped" | "timed_out" = "stopped",
    reason?: string,
    signal: Deno.Signal = "SIGTERM",
  ): void {
    const run = this.#runs.get(runId);
    if (!run || run.ending) return;
    run.ending = state;
    if (reason) run.endingReason = reason;
    if (!run.process) {
      if (run.spec.attach) this.#deps.listener.cancel(run.spec.attach.secretSha256);
      this.#finish(run, state, reason ? { reason } : {});
      return;
    }
    run.process.kill(signal);
    run.timers.push(
      setTimeout(() => run.process?.kill("SIGKILL"), this.#deps.stopGraceMs ?? 10_000),
    );
  }

  /** Resizes a TTY run's terminal. */
  resize(runId: string, cols: number, rows: number): void {
    const run = this.#runs.get(runId);
    run?.process?.resize(cols, rows);
    run?.recorder?.resize(cols, rows);
  }

  async #prepare(run: Run): Promise<void> {
    const { spec } = run;
    const lease = await this.#deps.slugs.acquire(spec.slug.sha256);
    run.release = lease.release;
    if (spec.uploads.length > 0) run.uploadsDir = await this.#fetchUploads(spec);
    if (run.ending) return this.#finish(run, run.ending, {});
    if (!spec.attach) return await this.#launch(run, lease.dir);
    const { secretSha256, expiresAt } = spec.attach;
    this.#deps.listener.expect(secretSha256, expiresAt, (client) => {
      clearTimeout(run.timers.shift());
      this.#launch(run, lease.dir, client).catch((err) =>
        this.#finish(run, "failed", { reason: errorMessage(err) })
      );
    });
    run.timers.push(setTimeout(() => {
      if (run.process || run.ending) return;
      this.#deps.listener.cancel(secretSha256);
      this.#finish(run, "expired", { reason: "Nobody attached within the attach window" });
    }, Math.max(0, expiresAt - Date.now())));
    run.ready = true;
    this.#report({ type: "attach_ready", runId: spec.runId, expiresAt });
  }

  async #fetchUploads(spec: RunSpec): Promise<string> {
    const dir = await Deno.makeTempDir({ dir: this.#deps.workDir, prefix: "uploads-" });
    await Deno.chmod(dir, 0o755);
    for (const upload of spec.uploads) {
      const path = `${dir}/${upload.name}`;
      using file = await Deno.open(path, { write: true, createNew: true, mode: 0o644 });
      await streamToFile(await this.#deps.fetchBlob(upload.sha256), file);
      await Deno.chmod(path, 0o644);
    }
    return dir;
  }

  async #launch(run: Run, slugDir: string, client?: AttachedClient): Promise<void> {
    const { spec } = run;
    const process = await this.#deps.sandbox.spawn({
      runId: spec.runId,
      slugDir,
      ...(run.uploadsDir ? { uploadsDir: run.uploadsDir } : {}),
      command: spec.command,
      env: spec.env,
      limits: spec.limits,
      network: spec.network,
      ...(spec.tty && client ? { tty: { cols: spec.cols, rows: spec.rows } } : {}),
    });
    run.process = process;
    if (run.ending) process.kill("SIGKILL");
    this.#report({ type: "run_state", runId: spec.runId, state: "running", at: Date.now() });
    run.timers.push(setTimeout(
      () =>
        this.stop(
          spec.runId,
          "timed_out",
          `Ran past its maximum duration of ${Math.round(spec.timeoutMs / 1000)}s`,
        ),
      spec.timeoutMs,
    ));
    let status: ExitStatus;
    if (client) {
      const recorder = this.#deps.record === false ? undefined : this.#record(run);
      const session = await pipeSession(process, client, {
        tty: spec.tty,
        ...(recorder
          ? {
            observe: (direction, bytes) =>
              direction === "in" ? recorder.input(bytes) : recorder.output(bytes),
          }
          : {}),
        idleTimeoutMs: spec.idleTimeoutMs,
        onIdle: () => this.stop(spec.runId, "timed_out", "Idle: no input or output for too long"),
        // As when a terminal closes: SIGHUP, then SIGKILL after the grace period.
        onHangup: () => this.stop(spec.runId, "stopped", "The client disconnected", "SIGHUP"),
      });
      status = session.status;
      await this.#finish(run, ...this.#outcome(run, status));
      session.close();
      return;
    }
    const shipper = new LogShipper(spec.runId, (msg) => this.#deps.send(msg));
    run.shipper = shipper;
    await Promise.all([
      shipper.collect(process.stdout, "stdout"),
      shipper.collect(process.stderr!, "stderr"),
    ]);
    status = await process.status;
    const outcome = this.#outcome(run, status);
    if (outcome[1].reason && outcome[0] !== "exited") shipper.note(`oneoff: ${outcome[1].reason}`);
    await Promise.race([
      shipper.finish(),
      new Promise((r) => run.timers.push(setTimeout(r, 30_000))),
    ]);
    await this.#finish(run, ...outcome);
  }

  /** Starts the audit recording of an attached session. */
  #record(run: Run): Recorder {
    const { spec } = run;
    const recorder = new Recorder({
      runId: spec.runId,
      dir: this.#deps.auditDir,
      send: (msg) => this.#deps.send(msg),
      onError: (err) =>
        this.#deps.log.error("audit spool failed", { run: spec.label, error: errorMessage(err) }),
    });
    recorder.start(spec.tty ? { cols: spec.cols, rows: spec.rows } : null);
    run.recorder = recorder;
    this.#recorders.set(spec.runId, recorder);
    return recorder;
  }

  #outcome(run: Run, status: ExitStatus): [RunState, { exitCode?: number; reason?: string }] {
    if (run.ending) {
      return [run.ending, {
        exitCode: status.code,
        ...(run.endingReason ? { reason: run.endingReason } : {}),
      }];
    }
    if (status.oomKilled) {
      const mib = Math.round(run.spec.limits.memoryBytes / 1024 / 1024);
      return ["exited", {
        exitCode: status.code,
        reason: `Killed: out of memory (size ${run.spec.size}, ${mib} MiB)`,
      }];
    }
    return ["exited", { exitCode: status.code }];
  }

  async #finish(
    run: Run,
    state: RunState,
    detail: { exitCode?: number; reason?: string },
  ): Promise<void> {
    if (!this.#runs.has(run.spec.runId)) return;
    this.#runs.delete(run.spec.runId);
    for (const timer of run.timers) clearTimeout(timer);
    this.#report({ type: "run_state", runId: run.spec.runId, state, ...detail, at: Date.now() });
    this.#deps.log.info("run ended", { run: run.spec.label, app: run.spec.app, state, ...detail });
    run.release?.();
    const recorder = run.recorder;
    if (recorder) {
      // Unacknowledged chunks stay spooled on disk: a later agent start delivers them.
      recorder.finish(60_000).finally(() => {
        if (this.#recorders.get(run.spec.runId) === recorder) {
          this.#recorders.delete(run.spec.runId);
        }
      });
    }
    if (run.uploadsDir) await Deno.remove(run.uploadsDir, { recursive: true }).catch(() => {});
  }

  #report(msg: AgentMessage): void {
    if (!this.#deps.send(msg)) this.#outbox.push(msg);
  }

  /** Kills every run (the agent is stopping). */
  async close(): Promise<void> {
    const waits = [];
    for (const run of this.#runs.values()) {
      run.process?.kill("SIGKILL");
      if (run.process) waits.push(run.process.status.catch(() => {}));
      for (const timer of run.timers) clearTimeout(timer);
    }
    await Promise.all(waits);
  }
}
