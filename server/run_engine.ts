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
import { errorMessage } from "../util/log.ts";
import { sha256Hex } from "./auth.ts";
import type { AgentEvents, AgentHub, ConnectedAgent } from "./agent_hub.ts";
import type { ServerContext } from "./context.ts";
import { HttpError } from "./http_error.ts";
import { logKey, runKey } from "./signals.ts";
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

/** Places runs on agents and applies what agents report. */
export class RunEngine implements AgentEvents {
  #ctx: ServerContext;
  #hub!: AgentHub;
  #ready = new Map<string, { agentId: string; expiresAt: number }>();
  #terms = new Map<string, string>();
  #runApps = new Map<string, { appId: number; label: string }>();
  #scheduling: Promise<void> | null = null;
  #again = false;
  #timer: ReturnType<typeof setInterval>;
  #lostTimers = new Map<string, ReturnType<typeof setTimeout>>();

  constructor(ctx: ServerContext) {
    this.#ctx = ctx;
    this.#timer = setInterval(() => this.schedule(), 1000);
  }

  /** Connects the engine to the hub it places runs through. */
  attachHub(hub: AgentHub): void {
    this.#hub = hub;
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
      if (Date.now() - run.created_at.getTime() > this.#ctx.config.queueTimeoutMs) {
        await this.#end(run, "failed", {
          reason: "No agent had capacity before the queue timeout",
        });
        continue;
      }
      const agent = this.#hub?.pick();
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
    const expiresAt = run.attached ? Date.now() + config.attachWindowMs : null;
    const placed = await store.updateRun(run.id, ["pending"], {
      state: "starting",
      agent_id: agent.id,
    });
    if (!placed) return;
    agent.active.add(run.id);
    this.#runApps.set(run.id, { appId: app.id, label: runLabel(run.number) });
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
    const agent = run.agent_id ? this.#hub.get(run.agent_id) : undefined;
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
    const agent = run.agent_id ? this.#hub.get(run.agent_id) : undefined;
    agent?.send({ type: "resize", runId: run.id, cols, rows });
  }

  async message(agent: ConnectedAgent, msg: AgentMessage): Promise<void> {
    switch (msg.type) {
      case "attach_ready":
        this.#ready.set(msg.runId, { agentId: agent.id, expiresAt: msg.expiresAt });
        this.#ctx.signals.notify(runKey(msg.runId));
        return;
      case "run_state":
        return await this.#applyState(agent, msg);
      case "logs":
        return await this.#storeLogs(agent, msg);
      case "audit":
        return await this.#storeAudit(agent, msg);
      default:
        return;
    }
  }

  async #applyState(agent: ConnectedAgent, msg: Extract<AgentMessage, { type: "run_state" }>) {
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
      ended_at: detail.at ?? new Date(),
    });
    this.#ready.delete(run.id);
    this.#runApps.delete(run.id);
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

  async #storeLogs(agent: ConnectedAgent, msg: Extract<AgentMessage, { type: "logs" }>) {
    let owner = this.#runApps.get(msg.runId);
    if (!owner) {
      const run = await this.#ctx.store.runById(msg.runId);
      if (!run || run.agent_id !== agent.id) return;
      owner = { appId: run.app_id, label: runLabel(run.number) };
    }
    const source = owner.label;
    let last = -1;
    const lines = msg.records.map((r) => {
      if (r.seq > last) last = r.seq;
      return {
        run_id: msg.runId,
        seq: r.seq,
        ts: new Date(r.ts),
        source,
        stream: r.stream,
        line: r.line,
      };
    });
    if (lines.length > 0) await this.#ctx.store.appendLogs(owner.appId, lines);
    agent.send({ type: "logs_ack", runId: msg.runId, seq: last });
    this.#ctx.signals.notify(logKey(owner.appId));
  }

  async #storeAudit(agent: ConnectedAgent, msg: Extract<AgentMessage, { type: "audit" }>) {
    const run = await this.#ctx.store.runById(msg.runId);
    // A chunk of a run that no longer exists (its app was destroyed) is
    // acknowledged and dropped, or the agent would keep it forever.
    if (run && run.agent_id === agent.id) {
      await this.#ctx.audit.receive(msg.runId, msg.seq, msg.data);
    }
    agent.send({ type: "audit_ack", runId: msg.runId, seq: msg.seq });
  }

  async joined(agent: ConnectedAgent, running: string[]): Promise<void> {
    const timer = this.#lostTimers.get(agent.id);
    if (timer !== undefined) clearTimeout(timer);
    this.#lostTimers.delete(agent.id);
    await this.#loseRunsOf(agent.id, new Set(running));
    await this.schedule();
  }

  left(agent: ConnectedAgent): Promise<void> {
    const { store } = this.#ctx;
    // The channel may come back (a network blip): its runs get a grace period.
    this.#lostTimers.set(
      agent.id,
      setTimeout(() => {
        this.#lostTimers.delete(agent.id);
        if (this.#hub.get(agent.id)) return;
        this.#loseRunsOf(agent.id, new Set()).catch((err) =>
          this.#ctx.log.error("marking runs lost failed", { error: errorMessage(err) })
        );
      }, this.#ctx.config.agentGraceMs),
    );
    return store.setAgentOnline(agent.id, false, new Date());
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
    clearInterval(this.#timer);
    for (const timer of this.#lostTimers.values()) clearTimeout(timer);
  }
}
