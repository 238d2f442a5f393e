/**
 * One run on this agent, from placement to its last report: it holds its
 * slug lease, uploads, process, log shipper or recorder and its timers, and
 * goes through prepare → (wait for the client) → launch → stop → finish.
 * @module
 */
import type { AgentMessage, RunEnded, RunSpec, RunState } from "../protocol/mod.ts";
import {
  DEFAULT_AUDIT_QUOTA_BYTES,
  fastChunkLimit,
  logQuotaMarker,
  MAX_TIMER_MS,
  REATTACH_GRACE_MS,
  timerProblem,
  watchMarker,
  watchNotice,
} from "../protocol/mod.ts";
import type { Clock, TimerId } from "../util/clock.ts";
import { streamToFile } from "../util/file_batcher.ts";
import type { ArtifactSink } from "./artifacts.ts";
import { RunDownloads } from "./_run_downloads.ts";
import { errorMessage, type Logger } from "../util/log.ts";
import type { AttachedClient, SecretUse } from "./attach_listener.ts";
import type { LogShipper } from "./log_shipper.ts";
import { Recorder } from "./recorder.ts";
import type { ExitStatus, Sandbox, SandboxProcess } from "./sandbox/mod.ts";
import { pipeSession } from "./session.ts";
import { type FramedRun, startFramed } from "./_framed_run.ts";
import type { SlugCache, SlugLease } from "./slug_cache.ts";

/**
 * How long a detached run's last lines may wait for the server's ack before
 * its end is reported anyway: they are on disk by then and follow later.
 */
export const FINAL_FLUSH_MS = 5_000;
/** The line an attached client gets when the agent stops under its session. */
export const SHUTDOWN_LINE = "\r\noneoff: the agent is shutting down\r\n";
/** The reason given to the runs a stopping agent ends. */
export const AGENT_STOPPED_REASON = "The agent was stopped";

/** The part of the attach listener a run uses: waiting for its client's secret. */
export interface AttachWaiter {
  /** Calls `onAttach` once, when a client presents the secret of that hash in a line fit for `use`. */
  expect(
    secretSha256: string,
    expiresAt: number,
    onAttach: (client: AttachedClient) => void,
    use?: SecretUse,
  ): void;
  /** Forgets a secret; later attempts are told why (`reason`, default: the window expired). */
  cancel(secretSha256: string, reason?: string): void;
}

/** What a run needs from the agent around it. */
export interface RunHost {
  sandbox: Sandbox;
  slugs: Pick<SlugCache, "acquire">;
  listener: AttachWaiter;
  /** Downloads a blob (an upload) from the server. */
  fetchBlob(sha256: string): Promise<ReadableStream<Uint8Array>>;
  /** Where the run's artifacts go; absent: `/tmp/downloads` is not kept. */
  artifacts?: ArtifactSink;
  /** Scratch space for uploads and downloads. */
  workDir: string;
  /** Spool of audit chunks not yet stored by the server. */
  auditDir: string;
  /** Record attached sessions. */
  record: boolean;
  /** SIGTERM → SIGKILL grace period when stopping. */
  stopGraceMs: number;
  clock: Clock;
  log: Logger;
  /** Sends logs and audit chunks; false when the channel is down (they are sent again later). */
  send(msg: AgentMessage): boolean;
  /** Sends a state change, kept until the channel is back when it is down. */
  report(msg: AgentMessage): void;
  /** Records the run's end on disk and sends it until the server acknowledges it. */
  outcome(ended: RunEnded): void;
  /** The shipper of a detached run's output (spooled on disk, acknowledged batch by batch). */
  shipper(runId: string, quotaBytes: number | undefined): LogShipper;
  /** The run has ended and said so: it leaves the agent's table. */
  ended(run: OneOff): void;
}

/** Why the agent ends a run itself. */
export type Ending = "stopped" | "timed_out";

/** Who came or went among a session's watchers, and through which server. */
export interface WatcherChange {
  joined?: string;
  left?: string;
  server?: string;
}

type Detail = { exitCode?: number; reason?: string };

const encoder = new TextEncoder();

/** One run placed on this agent; see the module documentation. */
export class OneOff {
  /** What the server asked for. */
  readonly spec: RunSpec;
  #host: RunHost;
  #lease: SlugLease | undefined;
  #slugDir = "";
  #uploadsDir: string | undefined;
  /** The host side of `/tmp/downloads`. */
  #downloads: RunDownloads | undefined;
  #process: SandboxProcess | undefined;
  #shipper: LogShipper | undefined;
  #recorder: Recorder | undefined;
  /** An attached run whose secret the listener expects. */
  #waiting = false;
  #ending: Ending | undefined;
  #endingReason: string | undefined;
  #ended = false;
  // One field per timer, each cleared by name.
  #attachWindow: TimerId | undefined;
  #maxDuration: TimerId | undefined;
  #killGrace: TimerId | undefined;
  #finalFlush: TimerId | undefined;
  /** Written to the attached client before its connection closes. */
  #farewell: string | undefined;
  /** The agent is closing: nothing waits for acks any more. */
  #killed = false;
  #framedSession: FramedRun | undefined;
  /** Tells the attached client one line out of band, once its session has started. */
  #say: ((text: string) => void) | undefined;
  /**
   * How many watch the session through each server, as each last said (it may
   * say so before the session starts); "" for a server that does not say who it is.
   */
  #watchers = new Map<string, number>();
  /** Who started watching before the session did: marked and told once it starts. */
  #earlyWatchers: string[] = [];
  #done = Promise.withResolvers<void>();

  constructor(spec: RunSpec, host: RunHost) {
    this.spec = spec;
    this.#host = host;
  }

  /** The recording of this attached session, once it has started. */
  get recorder(): Recorder | undefined {
    return this.#recorder;
  }

  /** Gets everything ready, then waits for the client (attached) or launches (detached); never throws. */
  async prepare(): Promise<void> {
    try {
      await this.#prepare();
    } catch (err) {
      await this.#finish("failed", { reason: errorMessage(err) });
      // Stopped before it failed: what was acquired after the finish goes now.
      await this.#cleanup();
    }
  }

  async #prepare(): Promise<void> {
    const { spec } = this;
    this.#checkTimers();
    this.#lease = await this.#host.slugs.acquire(spec.slug.sha256);
    this.#slugDir = this.#lease.dir;
    if (spec.uploads.length > 0) await this.#fetchUploads();
    if (this.#host.artifacts) {
      this.#downloads = await RunDownloads.make(
        this.#host.workDir,
        spec.runId,
        spec.artifactMaxBytes,
      );
    }
    // Stopped meanwhile: finish() has run, perhaps before the lease or the uploads were there.
    if (this.#ended) return await this.#cleanup();
    if (!spec.attach) return await this.#launch();
    const { secretSha256, expiresAt } = spec.attach;
    const { clock, listener } = this.#host;
    listener.expect(secretSha256, expiresAt, (client) => {
      // The run's own secret starts a session; it never resumes one.
      if (client.handshake?.mode === "resume") throw new Error("Not a first attach");
      clock.clearTimeout(this.#attachWindow);
      this.#launch(client).catch((err) => this.#finish("failed", { reason: errorMessage(err) }));
    });
    this.#attachWindow = clock.setTimeout(() => {
      if (this.#process || this.#ending) return;
      listener.cancel(secretSha256);
      this.#finish("expired", { reason: "Nobody attached within the attach window" });
    }, Math.max(0, expiresAt - clock.now()));
    this.#waiting = true;
    this.#host.report({ type: "attach_ready", runId: spec.runId, expiresAt });
  }

  /**
   * Refuses a spec whose timers JavaScript cannot keep: a timer beyond
   * MAX_TIMER_MS, or not positive, fires at once and would end the run then.
   */
  #checkTimers(): void {
    const { spec } = this;
    const window = spec.attach && spec.attach.expiresAt - this.#host.clock.now();
    const problem = timerProblem("timeoutMs", spec.timeoutMs) ??
      timerProblem("idleTimeoutMs", spec.idleTimeoutMs) ??
      // An attach window already over is the run's expiry, not a bad message.
      (window !== undefined && window > MAX_TIMER_MS
        ? timerProblem("attach window", window)
        : undefined);
    if (problem) throw new Error(`Cannot start run "${spec.runId}": ${problem}`);
  }

  async #fetchUploads(): Promise<void> {
    const dir = await Deno.makeTempDir({ dir: this.#host.workDir, prefix: "uploads-" });
    // Set at once: a failed download leaves a directory for the cleanup.
    this.#uploadsDir = dir;
    await Deno.chmod(dir, 0o755);
    for (const upload of this.spec.uploads) {
      const path = `${dir}/${upload.name}`;
      using file = await Deno.open(path, { write: true, createNew: true, mode: 0o644 });
      await streamToFile(await this.#host.fetchBlob(upload.sha256), file);
      await Deno.chmod(path, 0o644);
    }
  }

  /**
   * Sends what the run left in `/tmp/downloads` before its end is reported,
   * and says in its reason what was refused or could not be sent.
   */
  async #keepArtifacts(outcome: [RunState, Detail]): Promise<[RunState, Detail]> {
    const downloads = this.#downloads;
    const sink = this.#host.artifacts;
    if (!downloads || !sink || this.#ended) return outcome;
    downloads.unwatch(this.#host.clock);
    const { log } = this.#host;
    const said = await downloads.keep(
      sink,
      this.#killed,
      (file, ms) =>
        log.info("run artifact sent", {
          run: this.spec.label,
          name: file.name,
          bytes: file.size,
          ms,
        }),
    );
    if (!said) return outcome;
    log.warn("run artifacts not all kept", { run: this.spec.label, detail: said });
    const reason = outcome[1].reason ? `${outcome[1].reason}; ${said}` : said;
    return [outcome[0], { ...outcome[1], reason }];
  }

  /** Starts the process and follows it to its end: the attached session, or the shipped logs. */
  async #launch(client?: AttachedClient): Promise<void> {
    const { spec } = this;
    const { clock } = this.#host;
    const process = await this.#host.sandbox.spawn({
      runId: spec.runId,
      slugDir: this.#slugDir,
      ...(this.#uploadsDir ? { uploadsDir: this.#uploadsDir } : {}),
      ...(this.#downloads ? { downloadsDir: this.#downloads.dir } : {}),
      command: spec.command,
      env: spec.env,
      limits: spec.limits,
      network: spec.network,
      ...(spec.hostPorts?.length ? { hostPorts: spec.hostPorts } : {}),
      ...(spec.tty && client ? { tty: { cols: spec.cols, rows: spec.rows } } : {}),
    });
    this.#process = process;
    if (this.#ending) process.kill("SIGKILL");
    // A run stopped while its sandbox was starting has already reported its end.
    if (!this.#ended) {
      this.#host.report({
        type: "run_state",
        runId: spec.runId,
        state: "running",
        at: clock.now(),
      });
      this.#downloads?.watch(clock, (reason) => this.stop("stopped", reason));
      this.#maxDuration = clock.setTimeout(
        () =>
          this.stop(
            "timed_out",
            `Ran past its maximum duration of ${Math.round(spec.timeoutMs / 1000)}s`,
          ),
        spec.timeoutMs,
      );
    }
    if (client) await this.#attached(process, client);
    else await this.#detached(process);
  }

  async #attached(process: SandboxProcess, client: AttachedClient): Promise<void> {
    const { spec } = this;
    // Stopped while its sandbox started: the run has ended, there is nothing to keep.
    const recorder = this.#host.record && !this.#ended ? this.#record() : undefined;
    if (client.handshake?.mode === "framed") return await this.#framed(process, client, recorder);
    const session = await pipeSession(process, client, {
      tty: spec.tty,
      ...(recorder
        ? {
          observe: (direction, bytes) =>
            direction === "in" ? recorder.input(bytes) : recorder.output(bytes),
        }
        : {}),
      idleTimeoutMs: spec.idleTimeoutMs,
      onIdle: () => this.stop("timed_out", "Idle: no input or output for too long"),
      // As when a terminal closes: SIGHUP, then SIGKILL after the grace period.
      onHangup: () => this.stop("stopped", "The client disconnected", "SIGHUP"),
      clock: this.#host.clock,
      notices: (say) => this.#sayFrom(say),
    });
    this.#say = undefined;
    const outcome = await this.#keepArtifacts(
      this.#recordingCut(this.#outcome(session.status), recorder),
    );
    await this.#finish(...outcome);
    if (this.#farewell) {
      await client.conn.write(encoder.encode(this.#farewell)).catch(() => {});
    }
    session.close();
  }

  /** The framed session of our CLI: see `_framed_session.ts`. */
  async #framed(
    process: SandboxProcess,
    client: AttachedClient,
    recorder: Recorder | undefined,
  ): Promise<void> {
    const { spec } = this;
    const graceMs = spec.reattachGraceMs ?? REATTACH_GRACE_MS;
    const session = startFramed(process, {
      spec,
      graceMs,
      host: this.#host,
      ...(recorder ? { recorder } : {}),
      stop: (state, reason, signal) => this.stop(state, reason, signal),
      resize: (cols, rows) => this.resize(cols, rows),
    });
    this.#framedSession = session;
    this.#sayFrom((text) => session.notice(text));
    session.attach(client);
    const status = await session.run();
    this.#say = undefined;
    const outcome = await this.#keepArtifacts(this.#recordingCut(this.#outcome(status), recorder));
    await this.#finish(...outcome);
    const [state, detail] = outcome;
    if (this.#farewell) session.notice(this.#farewell.trim().replace(/^oneoff: /, ""));
    await session.end({
      state,
      exit_code: detail.exitCode ?? null,
      signal: status.signal,
      reason: detail.reason ?? null,
    });
    this.#framedSession = undefined;
  }

  /** The server asks to let another terminal reattach with this one-use secret. */
  reattach(secretSha256: string, expiresAt: number): void {
    this.#framedSession?.expect(secretSha256, expiresAt);
  }

  async #detached(process: SandboxProcess): Promise<void> {
    const { clock } = this.#host;
    const shipper = this.#host.shipper(this.spec.runId, this.spec.logQuotaBytes);
    this.#shipper = shipper;
    if (this.#ending) shipper.unbound();
    await Promise.all([
      shipper.collect(process.stdout, "stdout"),
      shipper.collect(process.stderr!, "stderr"),
    ]);
    let outcome = this.#outcome(await process.status);
    if (outcome[1].reason && outcome[0] !== "exited") shipper.note(`oneoff: ${outcome[1].reason}`);
    outcome = await this.#keepArtifacts(outcome);
    const over = shipper.overQuota;
    if (over.lines > 0) {
      // On the run too, so that its owner sees it in `ps` and the timeline, not only in the logs.
      const marker = logQuotaMarker(this.spec.logQuotaBytes ?? 0, over.lines, over.bytes)
        .replace(/^oneoff: /, "");
      const reason = outcome[1].reason ? `${outcome[1].reason}; ${marker}` : marker;
      outcome[1] = { ...outcome[1], reason };
    }
    // Spooled by now: the end can be reported, the lines follow exactly once.
    const delivered = shipper.finish();
    if (!this.#killed) {
      await Promise.race([
        delivered,
        new Promise<void>((resolve) =>
          this.#finalFlush = clock.setTimeout(resolve, FINAL_FLUSH_MS)
        ),
      ]);
    }
    await this.#finish(...outcome);
  }

  /** Starts the audit recording of the attached session. */
  #record(): Recorder {
    const { spec } = this;
    const recorder = new Recorder({
      runId: spec.runId,
      dir: this.#host.auditDir,
      send: (msg) => this.#host.send(msg),
      clock: this.#host.clock,
      ...(spec.auditQuotaBytes !== undefined ? { quotaBytes: spec.auditQuotaBytes } : {}),
      fastSeqLimit: fastChunkLimit(
        spec.timeoutMs,
        spec.auditQuotaBytes ?? DEFAULT_AUDIT_QUOTA_BYTES,
      ),
      onError: (err) =>
        this.#host.log.error("audit spool failed", { run: spec.label, error: errorMessage(err) }),
    });
    recorder.start(spec.tty ? { cols: spec.cols, rows: spec.rows } : null);
    if (this.#watched()) recorder.watched(true);
    for (const watcher of this.#earlyWatchers) {
      recorder.output(encoder.encode(watchMarker(watcher, true)));
    }
    this.#recorder = recorder;
    return recorder;
  }

  // The session can tell its client now: first whoever started watching before it began.
  #sayFrom(say: (text: string) => void): void {
    this.#say = say;
    for (const watcher of this.#earlyWatchers.splice(0)) say(watchNotice(watcher));
  }

  /**
   * The server says who watches the session: the recording goes faster
   * while anyone does, marks each watcher who came or went, and the user is
   * told once of each who came (on stderr, out of band).
   */
  watchers(count: number, change: WatcherChange = {}): void {
    const server = change.server ?? "";
    if (count > 0) this.#watchers.set(server, count);
    else this.#watchers.delete(server);
    const recorder = this.#recorder;
    recorder?.watched(this.#watched());
    if (change.joined !== undefined) {
      if (this.#say === undefined) this.#earlyWatchers.push(change.joined);
      recorder?.output(encoder.encode(watchMarker(change.joined, true)));
      this.#say?.(watchNotice(change.joined));
    }
    if (change.left !== undefined) {
      // Gone before the session began: neither told nor marked.
      const early = this.#earlyWatchers.indexOf(change.left);
      if (early >= 0 && recorder === undefined) this.#earlyWatchers.splice(early, 1);
      else recorder?.output(encoder.encode(watchMarker(change.left, false)));
    }
  }

  /** Ends the run: SIGTERM (or `signal`), then SIGKILL after the grace period; before launch, at once. */
  stop(state: Ending = "stopped", reason?: string, signal: Deno.Signal = "SIGTERM"): void {
    if (this.#ended || this.#ending) return;
    this.#ending = state;
    if (reason) this.#endingReason = reason;
    // A process paused by a full spool must still be able to die and be read to its end.
    this.#shipper?.unbound();
    const process = this.#process;
    if (!process) {
      if (this.spec.attach) this.#host.listener.cancel(this.spec.attach.secretSha256);
      this.#finish(state, reason ? { reason } : {});
      return;
    }
    process.kill(signal);
    this.#killGrace = this.#host.clock.setTimeout(
      () => process.kill("SIGKILL"),
      this.#host.stopGraceMs,
    );
  }

  /** The agent is stopping: the run ends `stopped`, and an attached client is told why. */
  shutdown(): void {
    if (this.spec.attach) this.#farewell = SHUTDOWN_LINE;
    this.stop("stopped", AGENT_STOPPED_REASON);
  }

  /** True while an attached run still waits for its client. */
  get waiting(): boolean {
    return this.#waiting && !this.#process && !this.#ending && !this.#ended;
  }

  /** Resizes a TTY run's terminal, and records it. */
  resize(cols: number, rows: number): void {
    this.#process?.resize(cols, rows);
    this.#recorder?.resize(cols, rows);
  }

  /** The channel is back: say again that the run waits for its client, and resend what is unacknowledged. */
  reconnected(): void {
    const { attach } = this.spec;
    if (attach && this.#waiting && !this.#process && !this.#ending) {
      this.#host.report({
        type: "attach_ready",
        runId: this.spec.runId,
        expiresAt: attach.expiresAt,
      });
    }
    this.#recorder?.resend();
    // A restarted server has no watchers; one that was only away says so again after the welcome.
    // (Watchers through other servers of the store are counted again when one comes or goes.)
    this.#watchers.clear();
    this.#recorder?.watched(false);
  }

  /** Anyone watches, through any server. */
  #watched(): boolean {
    return this.#watchers.size > 0;
  }

  /** On the run, so that the timeline says the recording was cut, not only the transcript. */
  #recordingCut(outcome: [RunState, Detail], recorder: Recorder | undefined): [RunState, Detail] {
    const unrecorded = recorder?.unrecorded;
    if (!unrecorded) return outcome;
    const cut =
      `recording stopped at its quota of ${unrecorded.quotaBytes} bytes; ${unrecorded.bytes} bytes of the session not recorded`;
    const reason = outcome[1].reason ? `${outcome[1].reason}; ${cut}` : cut;
    return [outcome[0], { ...outcome[1], reason }];
  }

  #outcome(status: ExitStatus): [RunState, Detail] {
    if (this.#ending) {
      return [this.#ending, {
        exitCode: status.code,
        ...(this.#endingReason ? { reason: this.#endingReason } : {}),
      }];
    }
    if (status.oomKilled) {
      const mib = Math.round(this.spec.limits.memoryBytes / 1024 / 1024);
      return ["exited", {
        exitCode: status.code,
        reason: `Killed: out of memory (size ${this.spec.size}, ${mib} MiB)`,
      }];
    }
    return ["exited", { exitCode: status.code }];
  }

  /** Reports the end (once), leaves the agent's table and cleans up. */
  async #finish(state: RunState, detail: Detail): Promise<void> {
    if (this.#ended) return;
    this.#ended = true;
    this.#clearTimers();
    const { spec } = this;
    const { clock, log } = this.#host;
    const lines = spec.attach ? {} : { lines: this.#shipper?.lines ?? 0 };
    this.#host.outcome({ runId: spec.runId, state, ...detail, ...lines, at: clock.now() });
    log.info("run ended", { run: spec.label, app: spec.app, state, ...detail });
    this.#host.ended(this);
    this.#done.resolve();
    await this.#cleanup();
  }

  // Runs at the end, and again when a stopped run's preparation comes back with more.
  async #cleanup(): Promise<void> {
    this.#lease?.release();
    this.#lease = undefined;
    const dir = this.#uploadsDir;
    this.#uploadsDir = undefined;
    if (dir) await Deno.remove(dir, { recursive: true }).catch(() => {});
    const downloads = this.#downloads;
    this.#downloads = undefined;
    await downloads?.remove();
  }

  /**
   * The agent is closing: SIGKILL, and resolves once the process is gone and
   * the end (`stopped`, "The agent was stopped") is recorded, or after
   * `waitMs` (the end then stays unrecorded, and the next agent start
   * reports the run as interrupted).
   */
  async kill(waitMs = 5_000): Promise<void> {
    this.#killed = true;
    this.#shipper?.unbound();
    const process = this.#process;
    if (!process) {
      // Preparing, or waiting for its client: it ends at once.
      this.stop("stopped", AGENT_STOPPED_REASON);
      return;
    }
    if (!this.#ending) {
      this.#ending = "stopped";
      this.#endingReason = AGENT_STOPPED_REASON;
    }
    this.#clearTimers();
    process.kill("SIGKILL");
    await process.status.catch(() => {});
    this.#framedSession?.close();
    let timer: ReturnType<typeof setTimeout> | undefined;
    await Promise.race([
      this.#done.promise,
      new Promise<void>((resolve) => timer = setTimeout(resolve, waitMs)),
    ]);
    clearTimeout(timer);
  }

  #clearTimers(): void {
    const { clock } = this.#host;
    for (
      const timer of [this.#attachWindow, this.#maxDuration, this.#killGrace, this.#finalFlush]
    ) {
      clock.clearTimeout(timer);
    }
    this.#downloads?.unwatch(clock);
    this.#attachWindow =
      this.#maxDuration =
      this.#killGrace =
      this.#finalFlush =
        undefined;
  }
}
