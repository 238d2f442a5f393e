/**
 * The server's end of the agents' control channels: one WebSocket per agent,
 * dialled by the agent, authenticated by the join token in its first message.
 * @module
 */
import { timingSafeEqual } from "node:crypto";
import { Buffer } from "node:buffer";
import {
  type AgentMessage,
  decodeAgentMessage,
  type RunEnded,
  type ServerMessage,
} from "../protocol/mod.ts";
import { type Clock, realClock, type TimerId } from "../util/clock.ts";
import { errorMessage } from "../util/log.ts";
import type { ConnectedAgent, ConnectedAgents } from "./agent_directory.ts";
import { sha256Hex } from "./auth.ts";
import type { ServerContext } from "./context.ts";

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
}

/** What an {@link AgentHub} is built with. */
export interface AgentHubOptions {
  /** Where joined agents are kept, shared with the run engine. */
  agents: ConnectedAgents;
  /** Who hears about joins, messages and departures. */
  events: AgentEvents;
  /** Time for heartbeats and join times; the real clock by default. */
  clock?: Clock;
}

/** Accepts agents' channels and keeps the set of connected agents. */
export class AgentHub {
  #ctx: ServerContext;
  #events: AgentEvents;
  #agents: ConnectedAgents;
  #clock: Clock;
  #sweeper: TimerId;

  constructor(ctx: ServerContext, options: AgentHubOptions) {
    this.#ctx = ctx;
    this.#events = options.events;
    this.#agents = options.agents;
    this.#clock = options.clock ?? realClock;
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
        await this.#events.message(agent, msg);
      }).catch((err) => log.error("agent message failed", { error: errorMessage(err) }));
    };
    socket.onclose = () => {
      chain = chain.then(async () => {
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
    if (msg.type !== "hello" || !this.#tokenOk(msg.token)) {
      log.warn("agent join refused: wrong join token", { address });
      socket.send(
        JSON.stringify({ type: "refused", reason: "Wrong join token" } satisfies ServerMessage),
      );
      socket.close(1008, "wrong join token");
      return undefined;
    }
    const row = await this.#ctx.store.upsertAgent({
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
    });
    const agent: ConnectedAgent = {
      id: row.id,
      name: row.name,
      capacity: msg.capacity,
      endpoint: msg.attach,
      active: new Set(msg.running),
      lastSeen: this.#clock.now(),
      draining: false,
      send(out: ServerMessage): boolean {
        if (socket.readyState !== WebSocket.OPEN) return false;
        socket.send(JSON.stringify(out));
        return true;
      },
      close(code: number, reason: string): void {
        socket.close(code, reason);
      },
    };
    this.#agents.add(agent)?.close(1000, "replaced by a new connection");
    agent.send({ type: "welcome", agentId: row.id, heartbeatMs: this.#ctx.config.heartbeatMs });
    log.info("agent joined", {
      agent: row.name,
      address,
      capacity: msg.capacity,
      sandbox: msg.sandbox,
    });
    await this.#events.joined(agent, msg.running, msg.ended);
    return agent;
  }

  #tokenOk(presented: unknown): boolean {
    if (typeof presented !== "string") return false;
    const a = Buffer.from(sha256Hex(presented), "hex");
    const b = Buffer.from(sha256Hex(this.#ctx.config.joinToken), "hex");
    return timingSafeEqual(a, b);
  }

  // Each tick: a heartbeat to every agent (it treats silence as death), and
  // an agent silent for three beats is dropped at once. A frozen or
  // partitioned peer never answers a close handshake, so waiting for its
  // close event would leave it online with its runs running for ever.
  #sweep(): void {
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

  /** Closes every channel and stops the sweeper. */
  close(): void {
    this.#clock.clearInterval(this.#sweeper);
    for (const agent of this.#agents.list()) agent.close(1001, "server shutting down");
    this.#agents.clear();
  }
}
