/**
 * The server's end of the agents' control channels: one WebSocket per agent,
 * dialled by the agent, authenticated in its first message by the agent's own
 * credential, or enrolled by the join token (then `pending` until approved).
 * @module
 */
import { randomBytes } from "node:crypto";
import {
  type AgentMessage,
  decodeAgentMessage,
  labelsText,
  type RunEnded,
  type ServerMessage,
} from "../protocol/mod.ts";
import { type Clock, realClock, type TimerId } from "../util/clock.ts";
import { errorMessage } from "../util/log.ts";
import type { ConnectedAgent, ConnectedAgents } from "./agent_directory.ts";
import { FailureLimiter, sha256Hex } from "./auth.ts";
import type { ServerContext } from "./context.ts";
import type { AgentRow } from "./store/mod.ts";

/** What the hub reports about agents (to the run engine and the ingest). */
export interface AgentEvents {
  /** A message about a run from this agent; processed in order per agent. */
  message(agent: ConnectedAgent, msg: AgentMessage): Promise<void>;
  /**
   * An agent (re)joined; `running` are the runs it still has, `ended` the
   * ends it kept while the server was away.
   */
  joined(agent: ConnectedAgent, running: string[], ended: RunEnded[]): Promise<void>;
  /** An agent's channel closed. */
  left(agent: ConnectedAgent): Promise<void>;
  /** A connected agent was approved: it may take runs now. */
  approved(agent: ConnectedAgent): Promise<void>;
}

/** What an {@link AgentHub} is built with. */
export interface AgentHubOptions {
  /** Where joined agents are kept, shared with the run engine. */
  agents: ConnectedAgents;
  /** Who hears about joins, messages and departures. */
  events: AgentEvents;
  /** Time for heartbeats and join times; the real clock by default. */
  clock?: Clock;
  /** Failed credentials and join tokens per address (default 10 a minute). */
  limiter?: FailureLimiter;
}

/** Accepts agents' channels and keeps the set of connected agents. */
export class AgentHub {
  #ctx: ServerContext;
  #events: AgentEvents;
  #agents: ConnectedAgents;
  #clock: Clock;
  #sweeper: TimerId;
  #limiter: FailureLimiter;

  constructor(ctx: ServerContext, options: AgentHubOptions) {
    this.#ctx = ctx;
    this.#events = options.events;
    this.#agents = options.agents;
    this.#clock = options.clock ?? realClock;
    this.#limiter = options.limiter ??
      new FailureLimiter({ limit: 10, now: () => this.#clock.now() });
    this.#sweeper = this.#clock.setInterval(() => this.#sweep(), ctx.config.heartbeatMs);
  }

  /** A connected agent by id. */
  get(id: string): ConnectedAgent | undefined {
    return this.#agents.get(id);
  }

  /** Upgrades an HTTP request to an agent's control channel. */
  accept(req: Request, address: string): Response {
    const { socket, response } = Deno.upgradeWebSocket(req, { idleTimeout: 30 });
    let agent: ConnectedAgent | undefined;
    let chain = Promise.resolve();
    // Log batches in their own order, beside the rest: a run printing faster
    // than the store takes lines (or a spool sent again after a failover)
    // must not hold up another run's start or attach readiness behind it.
    // Lines reaching the store after their run's end are expected (ingest.ts).
    let bulk = Promise.resolve();
    const log = this.#ctx.log.child("hub");
    socket.onmessage = (event) => {
      chain = chain.then(async () => {
        const decoded = decodeAgentMessage(String(event.data));
        if (!decoded.ok && !agent) {
          // Said to the agent too: a mismatch of versions shows on its side.
          log.warn("agent join refused: malformed hello", { address, error: decoded.error });
          const reason = `Malformed hello: ${decoded.error}`;
          socket.send(JSON.stringify({ type: "refused", reason } satisfies ServerMessage));
          socket.close(1008, "malformed hello");
          return;
        }
        if (!decoded.ok) {
          // Dropped whole: nothing of a malformed message is applied.
          log.warn("malformed agent message dropped", { agent: agent?.name, error: decoded.error });
          return;
        }
        const msg = decoded.value;
        if (!agent) {
          agent = await this.#hello(socket, msg, address);
          return;
        }
        // Dropped for silence (frozen, partitioned): what the old channel
        // still says is ignored; the agent dials again and says hello.
        if (this.#agents.get(agent.id) !== agent) return;
        agent.lastSeen = this.#clock.now();
        if (msg.type === "heartbeat" || msg.type === "hello") return;
        if (msg.type === "logs") {
          const from = agent;
          bulk = bulk.then(() => this.#events.message(from, msg))
            .catch((err) => log.error("agent log batch failed", { error: errorMessage(err) }));
          return;
        }
        await this.#events.message(agent, msg);
      }).catch((err) => log.error("agent message failed", { error: errorMessage(err) }));
    };
    socket.onclose = () => {
      chain = chain.then(() => bulk).then(async () => {
        if (!agent || !this.#agents.remove(agent)) return;
        log.info("agent left", { agent: agent.name });
        await this.#events.left(agent);
      }).catch((err) => log.error("agent close failed", { error: errorMessage(err) }));
    };
    socket.onerror = () => {};
    return response;
  }

  async #hello(socket: WebSocket, msg: AgentMessage, address: string) {
    const log = this.#ctx.log.child("hub");
    const refuse = (reason: string, detail: Record<string, unknown> = {}) => {
      log.warn("agent join refused", { address, reason, ...detail });
      socket.send(JSON.stringify({ type: "refused", reason } satisfies ServerMessage));
      // The reason is in the message: a close reason is bounded (123 bytes).
      socket.close(1008, "refused");
      return undefined;
    };
    if (msg.type !== "hello") return refuse("The first message must be a hello");
    const presented = msg.credential ?? msg.token;
    if (!presented) return refuse("The hello has neither a credential nor a join token");
    const hash = sha256Hex(presented);
    let row: AgentRow | null;
    let credential: string | undefined;
    if (msg.credential !== undefined) {
      row = await this.#ctx.store.agentByCredential(hash);
      if (!row || row.trust === "revoked") {
        return await this.#failed(refuse, address, hash, "Unknown or revoked agent credential");
      }
      if (row.name !== msg.name) {
        return refuse(
          `This credential belongs to the agent "${row.name}": start it with --name ${row.name}`,
        );
      }
      // Labels choose which apps' runs (and secrets) an agent gets: an
      // approved agent keeps those it was approved with, whatever it says now.
      const labels = msg.labels ?? {};
      const kept = row.trust === "approved" ? row.labels : labels;
      if (labelsText(kept) !== labelsText(labels)) {
        log.warn("agent labels changed since its approval: the approved ones are kept", {
          agent: row.name,
          approved: labelsText(kept),
          declared: labelsText(labels),
        });
      }
      row = await this.#ctx.store.upsertAgent({ ...this.#fields(msg), labels: kept, id: row.id });
    } else {
      if (!await this.#ctx.store.useJoinToken(hash, new Date(this.#clock.now()))) {
        return await this.#failed(refuse, address, hash, "Wrong, expired or used-up join token");
      }
      credential = randomBytes(32).toString("base64url");
      row = await this.#ctx.store.enrolAgent({
        ...this.#fields(msg),
        labels: msg.labels ?? {},
        trust: this.#ctx.config.autoApprove ? "approved" : "pending",
        credential_sha256: sha256Hex(credential),
      });
      // The join token only enrols: a name enrolled already is not taken
      // over, so a copied token cannot impersonate an agent (a use is spent).
      if (!row) return refuse(this.#nameTaken(msg.name));
      log.info("agent enrolled", { agent: row.name, address, trust: row.trust });
    }
    const agent: ConnectedAgent = {
      id: row.id,
      name: row.name,
      approved: row.trust === "approved",
      capacity: msg.capacity,
      endpoint: msg.attach,
      active: new Set(msg.running),
      lastSeen: this.#clock.now(),
      draining: false,
      labels: row.labels,
      send(out: ServerMessage): boolean {
        if (socket.readyState !== WebSocket.OPEN) return false;
        socket.send(JSON.stringify(out));
        return true;
      },
      close(code: number, reason: string): void {
        socket.close(code, reason);
      },
    };
    // Only the same credential gets here with this id: a reconnect of the
    // agent itself (a restart, or a channel the server has not seen die).
    this.#agents.add(agent)?.close(1000, "replaced by a new connection");
    // Said before anything else: no server takes it for lost from now on.
    await this.#ctx.cluster.touchAgents([agent.id]);
    if (credential) agent.send({ type: "enrolled", agentId: row.id, credential });
    const trust = agent.approved ? "approved" : "pending";
    agent.send({
      type: "welcome",
      agentId: row.id,
      heartbeatMs: this.#ctx.config.heartbeatMs,
      trust,
    });
    log.info("agent joined", {
      agent: row.name,
      address,
      trust,
      capacity: msg.capacity,
      sandbox: msg.sandbox,
    });
    await this.#events.joined(agent, msg.running, msg.ended);
    return agent;
  }

  #nameTaken(name: string): string {
    return `An agent named "${name}" is already enrolled: revoke it first or choose another --name`;
  }

  // Logged with the address, never what was presented; past the limit the
  // answer waits and says so. A valid credential is never refused for it.
  async #failed(
    refuse: (reason: string, detail?: Record<string, unknown>) => undefined,
    address: string,
    hash: string,
    reason: string,
  ): Promise<undefined> {
    if (!await this.#limiter.failed(address, hash)) return refuse(reason);
    return refuse(
      "Too many failed join attempts from this address or with this secret: try again in a minute",
      { rateLimited: true },
    );
  }

  #fields(msg: Extract<AgentMessage, { type: "hello" }>) {
    return {
      name: msg.name,
      online: true,
      since: new Date(this.#clock.now()),
      version: msg.version,
      capacity: msg.capacity,
      sandbox: msg.sandbox,
      attach_host: msg.attach.host,
      attach_port: msg.attach.port,
      attach_tls: msg.attach.tls,
      tls_fingerprint: msg.attach.tlsFingerprint ?? null,
      warnings: msg.warnings,
    };
  }

  /**
   * An admin approved or revoked an agent. Approved: a connected one takes
   * runs at once. Revoked: its runs are told to stop, its channel closes,
   * its credential no longer works, and its runs end `lost` after the grace.
   */
  async setTrust(id: string, trust: "approved" | "revoked"): Promise<void> {
    const agent = this.#agents.get(id);
    if (!agent) return;
    if (trust === "approved") {
      agent.approved = true;
      await this.#events.approved(agent);
      return;
    }
    agent.approved = false;
    for (const runId of agent.active) agent.send({ type: "stop_run", runId });
    agent.send({ type: "refused", reason: "This agent was revoked by an admin" });
    if (!this.#agents.remove(agent)) return;
    agent.close(1008, "revoked");
    this.#ctx.log.child("hub").warn("agent revoked: channel closed", { agent: agent.name });
    await this.#events.left(agent);
  }

  // Each tick: a heartbeat to every agent (it treats silence as death), and
  // an agent silent for three beats is dropped at once. A frozen or
  // partitioned peer never answers a close handshake, so waiting for its
  // close event would leave it online with its runs running for ever.
  #sweep(): void {
    this.#refreshTrust().catch((err) =>
      this.#ctx.log.child("hub").error("reading agents' trust failed", { error: errorMessage(err) })
    );
    // The other servers of the store see these agents held here.
    this.#ctx.cluster.touchAgents(this.#agents.list().map((agent) => agent.id)).catch((err) =>
      this.#ctx.log.child("hub").warn("recording held agents failed", { error: errorMessage(err) })
    );
    const deadline = this.#clock.now() - 3 * this.#ctx.config.heartbeatMs;
    for (const agent of this.#agents.list()) {
      if (agent.lastSeen >= deadline) {
        agent.send({ type: "heartbeat" });
        continue;
      }
      if (!this.#agents.remove(agent)) continue;
      const log = this.#ctx.log.child("hub");
      log.warn("agent dropped: missed heartbeats", { agent: agent.name });
      agent.close(1001, "missed heartbeats");
      this.#events.left(agent).catch((err) =>
        log.error("agent drop failed", { agent: agent.name, error: errorMessage(err) })
      );
    }
  }

  // Several servers may share one store: an approval or revocation made
  // through another reaches this one's channels within a heartbeat.
  async #refreshTrust(): Promise<void> {
    if (this.#agents.list().length === 0) return;
    const rows = new Map((await this.#ctx.store.listAgents()).map((row) => [row.id, row]));
    for (const agent of this.#agents.list()) {
      const row = rows.get(agent.id);
      // Another server it left may have written it offline after it joined here.
      if (row && !row.online && row.trust !== "revoked") {
        await this.#ctx.store.setAgentOnline(agent.id, true, new Date(this.#clock.now()));
      }
      const trust = row?.trust ?? "revoked";
      if (trust === "revoked") await this.setTrust(agent.id, "revoked");
      else if (trust === "approved" && !agent.approved) await this.setTrust(agent.id, "approved");
    }
  }

  /** Closes every channel and stops the sweeper. */
  close(): void {
    this.#clock.clearInterval(this.#sweeper);
    for (const agent of this.#agents.list()) agent.close(1001, "server shutting down");
    this.#agents.clear();
  }
}
