/**
 * Runs on the server side: creating, placing on agents, following their
 * state reports, stopping, and the queue timeout of pending runs.
 * @module
 */
import { randomBytes } from "node:crypto";
import {
  type AgentMessage,
  isTerminal,
  LIVE_STATES,
  runLabel,
  type RunSpec,
  type RunState,
  type SizeName,
} from "../protocol/mod.ts";
import { type Clock, realClock, type TimerId } from "../util/clock.ts";
import { errorMessage } from "../util/log.ts";
import type { AgentDirectory, ConnectedAgent } from "./agent_directory.ts";
import { sha256Hex } from "./auth.ts";
import type { ServerContext } from "./context.ts";
import { HttpError } from "./http_error.ts";
import { runKey } from "./signals.ts";
import type { AppRow, ReleaseRow, RunRow } from "./store/mod.ts";

/** What a client asks for when it creates a run. */
export interface RunRequest {
  command: string;
  attached: boolean;
  tty: boolean;
  cols: number;
  rows: number;
  size: SizeName;
  env: Record<string, string>;
  timeoutMs: number;
  uploads: { name: string; sha256: string; size: number }[];
  term: string;
}

/** Platform variables, set last so the app cannot override them. */
function platformEnv(app: AppRow, run: RunRow, term: string): Record<string, string> {
  return {
    APP: app.name,
    CONTAINER: runLabel(run.number),
    HOME: "/app",
    PORT: "5000",
    TERM: term,
  };
}

/** What a {@link RunEngine} is built with. */
export interface RunEngineOptions {
  /** The connected agents runs are placed on. */
  agents: AgentDirectory;
  /** Time for the queue timeout, the agents' grace and attach windows; real by default. */
  clock?: Clock;
}

/** How often pending runs are looked at even when nothing happened. */
const SCHEDULE_EVERY_MS = 1000;

/** Places runs on agents and applies what agents report. */
export class RunEngine {
  #ctx: ServerContext;
  #agents: AgentDirectory;
  #clock: Clock;
  #ready = new Map<string, { agentId: string; expiresAt: number }>();
  #terms = new Map<string, string>();
  #scheduling: Promise<void> | null = null;
  #again = false;
  #timer: TimerId;
  #lostTimers = new Map<string, TimerId>();

  constructor(ctx: ServerContext, options: RunEngineOptions) {
    this.#ctx = ctx;
    this.#agents = options.agents;
    this.#clock = options.clock ?? realClock;
    this.#timer = this.#clock.setInterval(() => this.schedule(), SCHEDULE_EVERY_MS);
  }

  /** Creates a run; attached runs get their secret, returned only here. */
  async create(app: AppRow, release: ReleaseRow, req: RunRequest, actor: string) {
    const live = await this.#ctx.store.listRuns({
      app_id: app.id,
      states: LIVE_STATES,
      limit: 1000,
    });
    if (live.length >= this.#ctx.config.maxRunsPerApp) {
      throw new HttpError(
        429,
        "too_many_runs",
        `App "${app.name}" already has ${live.length} one-offs running (limit ${this.#ctx.config.maxRunsPerApp}): stop one first`,
      );
    }
    const secret = req.attached ? randomBytes(32).toString("base64url") : null;
    const run = await this.#ctx.store.createRun({
      id: crypto.randomUUID(),
      app_id: app.id,
      command: req.command,
      attached: req.attached,
      tty: req.tty,
      size: req.size,
      release_id: release.id,
      env_overrides: req.env,
      uploads: req.uploads,
      cols: req.cols,
      rows: req.rows,
      timeout_ms: req.timeoutMs,
      actor,
      secret_sha256: secret ? sha256Hex(secret) : null,
      expires_at: null,
    });
    this.#terms.set(run.id, req.term);
    await this.#ctx.store.addEvent({
      app_id: app.id,
      app_name: app.name,
      actor,
      kind: "run.created",
      data: {
        run: runLabel(run.number),
        command: run.command,
        attached: run.attached,
        size: run.size,
        env_keys: Object.keys(req.env),
      },
    });
    await this.schedule();
    return { run: await this.#ctx.store.runById(run.id) ?? run, secret };
  }

  /** Where an attached run's client must connect, once its agent is ready. */
  readiness(runId: string): { agentId: string; expiresAt: number } | undefined {
    return this.#ready.get(runId);
  }

  /** Places pending runs, oldest first; one pass at a time. */
  schedule(): Promise<void> {
    if (this.#scheduling) {
      this.#again = true;
      return this.#scheduling;
    }
    this.#scheduling = (async () => {
      do {
        this.#again = false;
        await this.#placePending().catch((err) =>
          this.#ctx.log.error("scheduling failed", { error: errorMessage(err) })
        );
      } while (this.#again);
    })().finally(() => this.#scheduling = null);
    return this.#scheduling;
  }

  async #placePending(): Promise<void> {
    const pending = await this.#ctx.store.listRuns({ states: ["pending"], limit: 1000 });
    for (const run of pending.reverse()) {
      if (this.#clock.now() - run.created_at.getTime() > this.#ctx.config.queueTimeoutMs) {
        await this.#end(run, "failed", {
          reason: "No agent had capacity before the queue timeout",
        });
        continue;
      }
      const agent = this.#agents.pick();
      if (!agent) return;
      await this.#place(run, agent);
    }
  }

  async #place(run: RunRow, agent: ConnectedAgent): Promise<void> {
    const { store, config } = this.#ctx;
    const app = await store.appById(run.app_id);
    const release = await store.releaseById(run.release_id);
    if (!app || !release) {
      await this.#end(run, "failed", { reason: "The app or its release no longer exists" });
      return;
    }
    const expiresAt = run.attached ? this.#clock.now() + config.attachWindowMs : null;
    const placed = await store.updateRun(run.id, ["pending"], {
      state: "starting",
      agent_id: agent.id,
    });
    if (!placed) return;
    agent.active.add(run.id);
    const own = { ...await store.getEnv(app.id), ...run.env_overrides };
    const env = {
      // The prompt says where you are, as Scalingo's does, unless the app
      // (or -e) has its own. $PWD rather than bash's \w, which shows ~ for
      // /app (HOME).
      ...(run.tty ? { PS1: `${runLabel(run.number)} ${app.name}:$PWD $ ` } : {}),
      ...own,
      ...platformEnv(app, run, this.#terms.get(run.id) ?? "xterm-256color"),
    };
    this.#terms.delete(run.id);
    const spec: RunSpec = {
      runId: run.id,
      app: app.name,
      label: runLabel(run.number),
      command: run.command,
      env,
      slug: { sha256: release.sha256, size: release.size },
      size: run.size,
      limits: config.sizes[run.size],
      tty: run.tty,
      cols: run.cols,
      rows: run.rows,
      timeoutMs: run.timeout_ms,
      idleTimeoutMs: config.idleTimeoutMs,
      uploads: run.uploads,
      network: app.network,
    };
    if (run.secret_sha256 && expiresAt) {
      spec.attach = { secretSha256: run.secret_sha256, expiresAt };
    }
    if (!agent.send({ type: "start_run", spec })) {
      agent.active.delete(run.id);
      await store.updateRun(run.id, ["starting"], { state: "pending", agent_id: null });
      return;
    }
    this.#ctx.signals.notify(runKey(run.id));
  }

  /** Stops a run: pending ones at once, others through their agent. */
  async stop(run: RunRow, actor: string, label: string, appName: string): Promise<void> {
    await this.#ctx.store.addEvent({
      app_id: run.app_id,
      app_name: appName,
      actor,
      kind: "run.stop",
      data: { run: label },
    });
    if (run.state === "pending") {
      await this.#end(run, "stopped", { reason: `Stopped by ${actor}` });
      return;
    }
    const agent = run.agent_id ? this.#agents.get(run.agent_id) : undefined;
    if (!agent?.send({ type: "stop_run", runId: run.id })) {
      throw new HttpError(
        503,
        "agent_unreachable",
        `The agent of ${label} is not connected: try again`,
      );
    }
  }

  /** Forwards a terminal resize to the run's agent. */
  resize(run: RunRow, cols: number, rows: number): void {
    const agent = run.agent_id ? this.#agents.get(run.agent_id) : undefined;
    agent?.send({ type: "resize", runId: run.id, cols, rows });
  }

  /** The agent expects an attached run's client from now on. */
  attachReady(agent: ConnectedAgent, msg: Extract<AgentMessage, { type: "attach_ready" }>): void {
    this.#ready.set(msg.runId, { agentId: agent.id, expiresAt: msg.expiresAt });
    this.#ctx.signals.notify(runKey(msg.runId));
  }

  /** Applies an agent's report on one of its runs; reports on others' runs are ignored. */
  async runState(
    agent: ConnectedAgent,
    msg: Extract<AgentMessage, { type: "run_state" }>,
  ): Promise<void> {
    const run = await this.#ctx.store.runById(msg.runId);
    if (!run || run.agent_id !== agent.id) return;
    if (msg.state === "running") {
      const updated = await this.#ctx.store.updateRun(run.id, ["starting"], {
        state: "running",
        started_at: new Date(msg.at),
      });
      if (updated) this.#ready.delete(run.id);
      this.#ctx.signals.notify(runKey(run.id));
      return;
    }
    if (!isTerminal(msg.state)) return;
    agent.active.delete(run.id);
    await this.#end(run, msg.state, {
      exitCode: msg.exitCode ?? null,
      reason: msg.reason ?? null,
      at: new Date(msg.at),
    });
    await this.schedule();
  }

  async #end(
    run: RunRow,
    state: RunState,
    detail: { exitCode?: number | null; reason?: string | null; at?: Date },
  ): Promise<void> {
    const { store } = this.#ctx;
    const ended = await store.updateRun(run.id, LIVE_STATES, {
      state,
      exit_code: detail.exitCode ?? null,
      reason: detail.reason ?? null,
      ended_at: detail.at ?? new Date(this.#clock.now()),
    });
    this.#ready.delete(run.id);
    this.#terms.delete(run.id);
    if (!ended) return;
    const app = await store.appById(run.app_id);
    const duration = ended.started_at && ended.ended_at
      ? ended.ended_at.getTime() - ended.started_at.getTime()
      : null;
    await store.addEvent({
      app_id: run.app_id,
      app_name: app?.name ?? null,
      actor: run.actor,
      kind: "run.ended",
      data: {
        run: runLabel(run.number),
        command: run.command,
        state,
        exit_code: ended.exit_code,
        reason: ended.reason,
        duration_ms: duration,
      },
    });
    this.#ctx.signals.notify(runKey(run.id));
  }

  /** An agent (re)joined listing the runs it still has: the others of its runs are lost. */
  async joined(agent: ConnectedAgent, running: string[]): Promise<void> {
    this.#clock.clearTimeout(this.#lostTimers.get(agent.id));
    this.#lostTimers.delete(agent.id);
    await this.#loseRunsOf(agent.id, new Set(running));
    await this.schedule();
  }

  /** An agent's channel closed: its runs are lost unless it is back within the grace period. */
  left(agent: ConnectedAgent): Promise<void> {
    const { store } = this.#ctx;
    // The channel may come back (a network blip): its runs get a grace period.
    this.#lostTimers.set(
      agent.id,
      this.#clock.setTimeout(() => {
        this.#lostTimers.delete(agent.id);
        if (this.#agents.get(agent.id)) return;
        this.#loseRunsOf(agent.id, new Set()).catch((err) =>
          this.#ctx.log.error("marking runs lost failed", { error: errorMessage(err) })
        );
      }, this.#ctx.config.agentGraceMs),
    );
    return store.setAgentOnline(agent.id, false, new Date(this.#clock.now()));
  }

  async #loseRunsOf(agentId: string, keep: Set<string>): Promise<void> {
    const runs = await this.#ctx.store.listRuns({
      agent_id: agentId,
      states: ["starting", "running"],
      limit: 10000,
    });
    for (const run of runs) {
      if (keep.has(run.id)) continue;
      await this.#end(run, "lost", { reason: "Its agent went away" });
    }
  }

  /** Stops the timers. */
  close(): void {
    this.#clock.clearInterval(this.#timer);
    for (const timer of this.#lostTimers.values()) this.#clock.clearTimeout(timer);
  }
}
