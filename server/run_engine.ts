/**
 * Runs on the server side: creating, placing on agents, following their
 * state reports, stopping, and the queue timeout of pending runs.
 * @module
 */
import {
  type AgentMessage,
  DEFAULT_ARTIFACT_MAX_BYTES,
  DEFAULT_AUDIT_QUOTA_BYTES,
  DEFAULT_LOG_QUOTA_BYTES,
  isTerminal,
  LIVE_STATES,
  type QueuedReason,
  type RunEnded,
  runLabel,
  type RunSpec,
  type RunState,
  type ServerMessage,
  type SizeName,
} from "../protocol/mod.ts";
import { type Clock, realClock, type TimerId } from "../util/clock.ts";
import { errorMessage } from "../util/log.ts";
import { type AgentDirectory, type ConnectedAgent, sendToAgent } from "./agent_directory.ts";
import { AttachSecrets } from "./_attach_secret.ts";
import { type Idempotency, IDEMPOTENCY_KEEP_MS, replayedRun } from "./_idempotency.ts";
import { newToken, sha256Hex } from "./auth.ts";
import type { ServerContext } from "./context.ts";
import { appIdleTimeoutMs, appReattachGraceMs } from "./app_settings.ts";
import { HttpError } from "./http_error.ts";
import { QUEUE_KEY, runKey } from "./signals.ts";
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
  /** Refuse (429) rather than queue when the app is at its limit of live runs. */
  failFast?: boolean;
  /** Why the run is made (`--reason`), already checked. */
  reason?: string;
}

/** Why a pending run waits, and its place in its app's queue (1 = next). */
export interface QueuePlace {
  reason: QueuedReason;
  position: number;
}

/** The run states that hold one of an app's places and an agent's capacity. */
const ACTIVE: RunState[] = ["starting", "running"];

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
  #secrets: AttachSecrets;
  #terms = new Map<string, string>();
  /** The placing pass running now, if any. */
  #scheduling: Promise<void> | null = null;
  /** The one pass to run after it, shared by every call made meanwhile. */
  #queued: Promise<void> | null = null;
  /** The periodic pass looks at the queue timeouts even when no agent has room. */
  #expiryDue = true;
  #timer: TimerId;
  #lostTimers = new Map<string, TimerId>();
  #ticks = 0;
  #unlisten: () => void;

  constructor(ctx: ServerContext, options: RunEngineOptions) {
    this.#ctx = ctx;
    this.#agents = options.agents;
    this.#clock = options.clock ?? realClock;
    this.#secrets = new AttachSecrets(`${ctx.config.dataDir}/attach.key`);
    this.#timer = this.#clock.setInterval(() => {
      this.#expiryDue = true;
      this.schedule();
      // Agents of a server that died: the leader gives their runs the grace.
      if (ctx.cluster.shared && ctx.cluster.isLeader() && ++this.#ticks % 5 === 0) {
        this.#watchAbsentAgents().then(() => this.#markGone()).catch((err) =>
          this.#ctx.log.error("watching absent agents failed", { error: errorMessage(err) })
        );
      }
    }, SCHEDULE_EVERY_MS);
    // A run created through another server, or capacity freed there: this
    // server places what its own agents can take.
    this.#unlisten = ctx.signals.onRemote(QUEUE_KEY, () => this.schedule());
    this.started = this.#watchAbsentAgents().catch((err) =>
      this.#ctx.log.error("starting the agents' grace failed", { error: errorMessage(err) })
    );
  }

  /** Resolves once the grace timers of agents absent at start are set. */
  readonly started: Promise<void>;

  // After a restart no channel is open: an agent that had live runs and
  // never comes back must still have them lost after the grace.
  async #watchAbsentAgents(): Promise<void> {
    const live = await this.#ctx.store.listRuns({ states: ACTIVE, limit: 100_000 });
    const agentIds = new Set(live.flatMap((run) => run.agent_id ? [run.agent_id] : []));
    for (const agentId of agentIds) {
      if (this.#agents.get(agentId) || this.#lostTimers.has(agentId)) continue;
      if (await this.#ctx.cluster.heldElsewhere(agentId)) continue;
      this.#startGrace(agentId);
    }
  }

  // An agent whose server died never had its channel close: once no live
  // server holds it (and it did not just say hello), it is offline.
  async #markGone(): Promise<void> {
    const { store, cluster } = this.#ctx;
    const settled = this.#clock.now() - this.#ctx.config.heartbeatMs * 4;
    for (const row of await store.listAgents()) {
      if (!row.online || this.#agents.get(row.id) || row.since.getTime() > settled) continue;
      if (await cluster.heldElsewhere(row.id)) continue;
      await store.setAgentOnline(row.id, false, new Date(this.#clock.now()));
      this.#ctx.log.info("agent offline: no server holds its channel", { agent: row.name });
    }
  }

  /**
   * Creates a run; attached runs get their secret, returned only here. With
   * an idempotency key, a repeat gets the first run (and its secret) back.
   */
  async create(
    app: AppRow,
    release: ReleaseRow,
    req: RunRequest,
    actor: string,
    options: { idempotency?: Idempotency } = {},
  ): Promise<{ run: RunRow; secret: string | null; replayed: boolean }> {
    const id = crypto.randomUUID();
    const idem = options.idempotency;
    if (idem) {
      const held = await this.#ctx.store.claimIdempotencyKey(
        { app_id: app.id, key: idem.key, fingerprint: idem.fingerprint, run_id: id },
        new Date(this.#clock.now() - IDEMPOTENCY_KEEP_MS),
      );
      if (held) {
        const run = await replayedRun(this.#ctx, { app, held, idem });
        const secret = run.attached ? await this.#secrets.secret(run.id) : null;
        return { run, secret, replayed: true };
      }
    }
    try {
      const run = await this.#create(id, app, release, req, actor);
      return { ...run, replayed: false };
    } catch (err) {
      if (idem) await this.#ctx.store.releaseIdempotencyKey(app.id, idem.key, id);
      throw err;
    }
  }

  async #create(id: string, app: AppRow, release: ReleaseRow, req: RunRequest, actor: string) {
    const limit = this.#ctx.config.maxRunsPerApp;
    if (req.failFast) {
      const live = await this.#ctx.store.listRuns({ app_id: app.id, states: LIVE_STATES, limit });
      if (live.length >= limit) {
        throw new HttpError(
          429,
          "too_many_runs",
          `App "${app.name}" already has ${live.length} one-offs running or queued (limit ${limit}): stop one first, or leave out fail_fast to wait in the queue`,
        );
      }
    }
    const secret = req.attached ? await this.#secrets.secret(id) : null;
    const run = await this.#ctx.store.createRun({
      id,
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
      idle_timeout_ms: req.attached ? appIdleTimeoutMs(this.#ctx.config, app) : null,
      actor,
      purpose: req.reason ?? null,
      secret_sha256: secret ? sha256Hex(secret) : null,
      expires_at: null,
    });
    this.#ctx.signals.notify(runKey(run.id));
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
        ...(req.reason !== undefined ? { reason: req.reason } : {}),
      },
    });
    this.#ctx.signals.notify(QUEUE_KEY);
    await this.schedule();
    return { run: await this.#ctx.store.runById(run.id) ?? run, secret };
  }

  /**
   * The queue place of one pending run, counted without reading the queue:
   * what a run's creation answers (listing the whole queue made each of
   * 1,000 runs created at once cost as much as all the others).
   */
  async placeOf(run: RunRow): Promise<Map<string, QueuePlace>> {
    const { store, config } = this.#ctx;
    const [position, active] = await Promise.all([
      store.countRuns({ app_id: run.app_id, states: ["pending"], max_number: run.number }),
      store.countRuns({ app_id: run.app_id, states: ACTIVE }),
    ]);
    const reason: QueuedReason = active >= config.maxRunsPerApp ? "app_limit" : "no_capacity";
    return new Map([[run.id, { reason, position }]]);
  }

  /**
   * Why each pending run of the app waits and its place in the app's queue
   * (`places`), and how the app's limit is used.
   */
  async queue(appId: number): Promise<{
    places: Map<string, QueuePlace>;
    limit: number;
    active: number;
    pending: number;
  }> {
    const { store, config } = this.#ctx;
    const pending = await store.listRuns({ app_id: appId, states: ["pending"], limit: 100_000 });
    const active = await store.listRuns({ app_id: appId, states: ACTIVE, limit: 100_000 });
    const reason: QueuedReason = active.length >= config.maxRunsPerApp
      ? "app_limit"
      : "no_capacity";
    const places = new Map(
      pending.reverse().map((run, i) => [run.id, { reason, position: i + 1 }]),
    );
    return {
      places,
      limit: config.maxRunsPerApp,
      active: active.length,
      pending: pending.length,
    };
  }

  /**
   * Where an attached run's client must connect, once its agent is ready.
   * Kept on the run's row (its agent, and `expires_at` set by
   * `attach_ready`), so that a restarted server still knows.
   */
  static readiness(run: RunRow): { agentId: string; expiresAt: number } | undefined {
    if (!run.attached || run.state !== "starting" || !run.agent_id || !run.expires_at) {
      return undefined;
    }
    return { agentId: run.agent_id, expiresAt: run.expires_at.getTime() };
  }

  /**
   * Places pending runs, oldest first; one pass at a time. Resolves once a
   * pass that began after the call has ended: a call during a pass waits
   * for the one next pass (shared by all such calls), never for every pass
   * that later calls bring (1,000 runs created at once waited for each
   * other that way, 50 runs/s).
   */
  schedule(): Promise<void> {
    if (this.#scheduling === null) {
      this.#scheduling = this.#placePending()
        .catch((err) => this.#ctx.log.error("scheduling failed", { error: errorMessage(err) }))
        .finally(() => this.#scheduling = null);
      return this.#scheduling;
    }
    this.#queued ??= this.#scheduling.then(() => {
      this.#queued = null;
      return this.schedule();
    });
    return this.#queued;
  }

  // Oldest first; a run whose app is at its limit of live runs waits its
  // turn (the queue timeout still applies) without holding up other apps.
  async #placePending(): Promise<void> {
    const { store, config } = this.#ctx;
    // With no agent free, a pass could only expire runs, which the periodic
    // pass does: reading the whole queue for each run created made 1,000
    // runs created at once cost a million rows read.
    // Queue timeouts are periodic work: the leader's alone (server/cluster/).
    const expiry = this.#expiryDue && this.#ctx.cluster.isLeader();
    this.#expiryDue = false;
    if (!expiry && !this.#agents.pick()) return;
    const pending = await store.listRuns({ states: ["pending"], limit: 1000 });
    if (pending.length === 0) return;
    // An app's labels choose its agents (app_settings.ts).
    const apps = new Map((await store.listApps()).map((app) => [app.id, app]));
    const perApp = new Map<number, number>();
    for (const run of await store.listRuns({ states: ACTIVE, limit: 100_000 })) {
      perApp.set(run.app_id, (perApp.get(run.app_id) ?? 0) + 1);
    }
    for (const run of pending.reverse()) {
      if (this.#clock.now() - run.created_at.getTime() > config.queueTimeoutMs) {
        if (!expiry) continue;
        const full = (perApp.get(run.app_id) ?? 0) >= config.maxRunsPerApp;
        await this.#end(run, "failed", {
          reason: full
            ? `The app stayed at its limit of ${config.maxRunsPerApp} live one-offs until the queue timeout`
            : "No agent had capacity before the queue timeout",
        });
        continue;
      }
      if ((perApp.get(run.app_id) ?? 0) >= config.maxRunsPerApp) continue;
      const agent = this.#agents.pick(apps.get(run.app_id)?.labels);
      if (!agent) continue;
      if (await this.#place(run, agent)) {
        perApp.set(run.app_id, (perApp.get(run.app_id) ?? 0) + 1);
      }
    }
  }

  async #place(run: RunRow, agent: ConnectedAgent): Promise<boolean> {
    const { store, config } = this.#ctx;
    const app = await store.appById(run.app_id);
    const release = await store.releaseById(run.release_id);
    if (!app || !release) {
      await this.#end(run, "failed", { reason: "The app or its release no longer exists" });
      return false;
    }
    const expiresAt = run.attached ? this.#clock.now() + config.attachWindowMs : null;
    const placed = await store.updateRun(run.id, ["pending"], {
      state: "starting",
      agent_id: agent.id,
    });
    if (!placed) return false;
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
      // The app's settings (app_settings.ts); a run keeps the idle timeout it was created with.
      idleTimeoutMs: run.idle_timeout_ms ?? appIdleTimeoutMs(config, app),
      reattachGraceMs: appReattachGraceMs(config, app),
      uploads: run.uploads,
      network: app.network,
      ...(app.network === "isolated" && app.host_ports.length ? { hostPorts: app.host_ports } : {}),
      logQuotaBytes: config.logQuotaBytes ?? DEFAULT_LOG_QUOTA_BYTES,
      auditQuotaBytes: config.auditQuotaBytes ?? DEFAULT_AUDIT_QUOTA_BYTES,
      artifactMaxBytes: config.maxArtifactBytes ?? DEFAULT_ARTIFACT_MAX_BYTES,
    };
    if (run.secret_sha256 && expiresAt) {
      spec.attach = { secretSha256: run.secret_sha256, expiresAt };
    }
    if (!agent.send({ type: "start_run", spec })) {
      agent.active.delete(run.id);
      await store.updateRun(run.id, ["starting"], { state: "pending", agent_id: null });
      return false;
    }
    this.#ctx.signals.notify(runKey(run.id));
    return true;
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
    const msg = { type: "stop_run", runId: run.id } as const;
    if (run.agent_id && await this.#send(run.agent_id, msg)) return;
    // Its agent is away: the run is stopped here, and the agent is told to
    // kill it if it comes back still running it (see `joined`).
    await this.#end(run, "stopped", {
      reason: `Stopped by ${actor} while its agent was disconnected`,
    });
  }

  /** Forwards a terminal resize to the run's agent. */
  async resize(run: RunRow, cols: number, rows: number): Promise<void> {
    if (run.agent_id) await this.#send(run.agent_id, { type: "resize", runId: run.id, cols, rows });
  }

  // Here or through the server that holds the agent's channel.
  #send(agentId: string, msg: ServerMessage): Promise<boolean> {
    return sendToAgent(this.#agents, this.#ctx.cluster, { agentId, msg });
  }

  /**
   * Lets another terminal reattach to a running attached run: a fresh
   * one-use secret, handed to the run's agent; null when the agent is away.
   */
  async reattach(run: RunRow): Promise<{ secret: string; expiresAt: number } | null> {
    if (!run.agent_id) return null;
    const secret = newToken("resume");
    const expiresAt = this.#clock.now() + this.#ctx.config.attachWindowMs;
    const sent = await this.#send(run.agent_id, {
      type: "reattach",
      runId: run.id,
      secretSha256: sha256Hex(secret),
      expiresAt,
    });
    return sent ? { secret, expiresAt } : null;
  }

  /** A framed session's event, reported by its agent: on the app's timeline. */
  async sessionEvent(
    agent: ConnectedAgent,
    msg: Extract<AgentMessage, { type: "session_event" }>,
  ): Promise<void> {
    const { store } = this.#ctx;
    const run = await store.runById(msg.runId);
    if (!run || run.agent_id !== agent.id) return;
    const app = await store.appById(run.app_id);
    await store.addEvent({
      app_id: run.app_id,
      app_name: app?.name ?? null,
      actor: run.actor,
      kind: "run.reattached",
      data: { run: runLabel(run.number), address: msg.address },
    });
  }

  /** The agent expects an attached run's client from now on: kept on the run's row. */
  async attachReady(
    agent: ConnectedAgent,
    msg: Extract<AgentMessage, { type: "attach_ready" }>,
  ): Promise<void> {
    const run = await this.#ctx.store.runById(msg.runId);
    if (!run || run.agent_id !== agent.id) return;
    await this.#ctx.store.updateRun(run.id, ["starting"], {
      state: "starting",
      expires_at: new Date(msg.expiresAt),
    });
    this.#ctx.signals.notify(runKey(msg.runId));
  }

  /**
   * Applies an agent's report on one of its runs; reports on others' runs
   * are ignored. An end is answered `state_ack` once recorded, a repeat too.
   * True when it was a report on one of this agent's runs.
   */
  async runState(
    agent: ConnectedAgent,
    msg: Extract<AgentMessage, { type: "run_state" }>,
  ): Promise<boolean> {
    const run = await this.#ctx.store.runById(msg.runId);
    if (!run) {
      // Its app was destroyed: nothing to record, and the agent may forget it.
      if (isTerminal(msg.state)) agent.send({ type: "state_ack", runId: msg.runId });
      return false;
    }
    if (run.agent_id !== agent.id) {
      this.#ctx.log.warn("run report refused: the run is not this agent's", {
        agent: agent.name,
        run: msg.runId,
        state: msg.state,
      });
      return false;
    }
    if (msg.state === "running") {
      await this.#ctx.store.updateRun(run.id, ["starting"], {
        state: "running",
        started_at: new Date(msg.at),
      });
      this.#ctx.signals.notify(runKey(run.id));
      return true;
    }
    if (!isTerminal(msg.state)) return true;
    await this.#applyEnd(agent, run, msg);
    await this.schedule();
    return true;
  }

  // An end the agent reports overrides `lost`: lost is only for runs whose
  // agent never reported back. Any other recorded end stands.
  async #applyEnd(agent: ConnectedAgent, run: RunRow, end: RunEnded): Promise<void> {
    agent.active.delete(run.id);
    await this.#end(run, end.state, {
      exitCode: end.exitCode ?? null,
      reason: end.reason ?? null,
      at: new Date(end.at),
      ...(end.lines !== undefined ? { logLines: end.lines } : {}),
    }, [...LIVE_STATES, "lost"]);
    agent.send({ type: "state_ack", runId: run.id });
  }

  async #end(
    run: RunRow,
    state: RunState,
    detail: { exitCode?: number | null; reason?: string | null; at?: Date; logLines?: number },
    from: RunState[] = LIVE_STATES,
  ): Promise<void> {
    const { store } = this.#ctx;
    const ended = await store.updateRun(run.id, from, {
      state,
      exit_code: detail.exitCode ?? null,
      reason: detail.reason ?? null,
      ended_at: detail.at ?? new Date(this.#clock.now()),
      ...(detail.logLines !== undefined ? { log_lines: detail.logLines } : {}),
    });
    this.#terms.delete(run.id);
    if (!ended) return;
    // A place freed: another server's agents may take the app's next run.
    this.#ctx.signals.notify(QUEUE_KEY);
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

  /**
   * An agent (re)joined. First the ends it kept while the server was away
   * are applied; then the runs it still has are reconciled (a run marked
   * lost meanwhile is running again, one stopped or unknown here is
   * killed); only then are its other runs lost. Resolves with the ends
   * applied to this agent's runs.
   */
  async joined(
    agent: ConnectedAgent,
    running: string[],
    ended: RunEnded[] = [],
  ): Promise<RunEnded[]> {
    this.#clock.clearTimeout(this.#lostTimers.get(agent.id));
    this.#lostTimers.delete(agent.id);
    const { store } = this.#ctx;
    const applied: RunEnded[] = [];
    for (const end of ended) {
      if (!isTerminal(end.state)) continue;
      const run = await store.runById(end.runId);
      if (!run) {
        agent.send({ type: "state_ack", runId: end.runId });
      } else if (run.agent_id === agent.id) {
        await this.#applyEnd(agent, run, end);
        applied.push(end);
      }
    }
    const still = new Set<string>();
    for (const runId of running) {
      const run = await store.runById(runId);
      if (run?.agent_id === agent.id && !isTerminal(run.state)) {
        still.add(runId);
      } else if (run?.agent_id === agent.id && run.state === "lost") {
        await this.#recover(agent, run);
        still.add(runId);
      } else {
        // Stopped while its agent was away, or no longer known here.
        agent.active.delete(runId);
        agent.send({ type: "stop_run", runId });
      }
    }
    await this.#requeueUnstarted(agent, still);
    await this.#loseRunsOf(agent.id, still);
    await this.schedule();
    return applied;
  }

  /**
   * Runs placed on this agent that it neither has nor reported (their
   * `start_run` never reached it: it froze or the channel broke right then)
   * and that never started go back to the queue, to be placed again, rather
   * than be lost. A run that did start and is not listed is lost.
   */
  async #requeueUnstarted(agent: ConnectedAgent, keep: Set<string>): Promise<void> {
    const { store } = this.#ctx;
    const placed = await store.listRuns({ agent_id: agent.id, states: ["starting"], limit: 10000 });
    for (const run of placed) {
      if (keep.has(run.id) || run.started_at) continue;
      const back = await store.updateRun(run.id, ["starting"], {
        state: "pending",
        agent_id: null,
        expires_at: null,
      });
      if (!back) continue;
      agent.active.delete(run.id);
      this.#ctx.log.info("run placed again: its agent never received it", {
        run: runLabel(run.number),
        agent: agent.name,
      });
      this.#ctx.signals.notify(runKey(run.id));
    }
  }

  async #recover(agent: ConnectedAgent, run: RunRow): Promise<void> {
    const { store } = this.#ctx;
    const back = await store.updateRun(run.id, ["lost"], {
      state: run.started_at ? "running" : "starting",
      exit_code: null,
      reason: null,
      ended_at: null,
    });
    if (!back) return;
    agent.active.add(run.id);
    const app = await store.appById(run.app_id);
    await store.addEvent({
      app_id: run.app_id,
      app_name: app?.name ?? null,
      actor: run.actor,
      kind: "run.recovered",
      data: { run: runLabel(run.number), command: run.command },
    });
    this.#ctx.signals.notify(runKey(run.id));
  }

  /** An agent's channel closed: its runs are lost unless it is back within the grace period. */
  async left(agent: ConnectedAgent): Promise<void> {
    const { cluster, store } = this.#ctx;
    await cluster.releaseAgent(agent.id);
    // Already back through another server (it dialled the load balancer again).
    if (await cluster.heldElsewhere(agent.id)) return;
    this.#startGrace(agent.id);
    await store.setAgentOnline(agent.id, false, new Date(this.#clock.now()));
  }

  // The channel may come back (a network blip): its runs get a grace period.
  #startGrace(agentId: string): void {
    this.#clock.clearTimeout(this.#lostTimers.get(agentId));
    this.#lostTimers.set(
      agentId,
      this.#clock.setTimeout(async () => {
        this.#lostTimers.delete(agentId);
        if (this.#agents.get(agentId)) return;
        try {
          if (await this.#ctx.cluster.heldElsewhere(agentId)) return;
          await this.#loseRunsOf(agentId, new Set());
        } catch (err) {
          this.#ctx.log.error("marking runs lost failed", { error: errorMessage(err) });
        }
      }, this.#ctx.config.agentGraceMs),
    );
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
    this.#unlisten();
    this.#clock.clearInterval(this.#timer);
    for (const timer of this.#lostTimers.values()) this.#clock.clearTimeout(timer);
  }
}
