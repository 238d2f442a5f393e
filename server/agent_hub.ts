/**
 * The server's end of the agents' control channels: one WebSocket per agent,
 * dialled by the agent, authenticated by the join token in its first message.
 * @module
 */
import { timingSafeEqual } from "node:crypto";
import { Buffer } from "node:buffer";
import {
  type AgentMessage,
  type AttachEndpoint,
  decodeAgentMessage,
  type ServerMessage,
} from "../protocol/mod.ts";
import { errorMessage } from "../util/log.ts";
import { sha256Hex } from "./auth.ts";
import type { ServerContext } from "./context.ts";

/** What the hub tells the run engine. */
export interface AgentEvents {
  /** A message about a run from this agent; processed in order per agent. */
  message(agent: ConnectedAgent, msg: AgentMessage): Promise<void>;
  /** An agent (re)joined; `running` are the runs it still has. */
  joined(agent: ConnectedAgent, running: string[]): Promise<void>;
  /** An agent's channel closed. */
  left(agent: ConnectedAgent): Promise<void>;
}

/** An agent with an open control channel. */
export interface ConnectedAgent {
  id: string;
  name: string;
  capacity: number;
  endpoint: AttachEndpoint;
  /** Runs placed on it and not ended. */
  active: Set<string>;
  send(msg: ServerMessage): boolean;
}

const HEARTBEAT_MS = 5_000;

/** Accepts agents' channels and keeps the set of connected agents. */
export class AgentHub {
  #ctx: ServerContext;
  #events: AgentEvents;
  #agents = new Map<string, ConnectedAgent & { socket: WebSocket; lastSeen: number }>();
  #sweeper: ReturnType<typeof setInterval>;

  constructor(ctx: ServerContext, events: AgentEvents) {
    this.#ctx = ctx;
    this.#events = events;
    this.#sweeper = setInterval(() => this.#sweep(), HEARTBEAT_MS);
  }

  /** Connected agents. */
  agents(): ConnectedAgent[] {
    return [...this.#agents.values()];
  }

  /** A connected agent by id. */
  get(id: string): ConnectedAgent | undefined {
    return this.#agents.get(id);
  }

  /** The least loaded connected agent with free capacity, if any. */
  pick(): ConnectedAgent | undefined {
    let best: ConnectedAgent | undefined;
    for (const agent of this.#agents.values()) {
      if (agent.active.size >= agent.capacity) continue;
      if (!best || agent.active.size / agent.capacity < best.active.size / best.capacity) {
        best = agent;
      }
    }
    return best;
  }

  /** Upgrades an HTTP request to an agent's control channel. */
  accept(req: Request, address: string): Response {
    const { socket, response } = Deno.upgradeWebSocket(req, { idleTimeout: 30 });
    let agent: (ConnectedAgent & { socket: WebSocket; lastSeen: number }) | undefined;
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
        agent.lastSeen = Date.now();
        if (msg.type === "heartbeat" || msg.type === "hello") return;
        await this.#events.message(agent, msg);
      }).catch((err) => log.error("agent message failed", { error: errorMessage(err) }));
    };
    socket.onclose = () => {
      chain = chain.then(async () => {
        if (!agent || this.#agents.get(agent.id) !== agent) return;
        this.#agents.delete(agent.id);
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
      since: new Date(),
      version: msg.version,
      capacity: msg.capacity,
      sandbox: msg.sandbox,
      attach_host: msg.attach.host,
      attach_port: msg.attach.port,
      attach_tls: msg.attach.tls,
      tls_fingerprint: msg.attach.tlsFingerprint ?? null,
      warnings: msg.warnings,
    });
    const previous = this.#agents.get(row.id);
    if (previous) previous.socket.close(1000, "replaced by a new connection");
    const agent = {
      id: row.id,
      name: row.name,
      capacity: msg.capacity,
      endpoint: msg.attach,
      active: new Set(msg.running),
      socket,
      lastSeen: Date.now(),
      send(out: ServerMessage): boolean {
        if (socket.readyState !== WebSocket.OPEN) return false;
        socket.send(JSON.stringify(out));
        return true;
      },
    };
    this.#agents.set(row.id, agent);
    agent.send({ type: "welcome", agentId: row.id, heartbeatMs: HEARTBEAT_MS });
    log.info("agent joined", {
      agent: row.name,
      address,
      capacity: msg.capacity,
      sandbox: msg.sandbox,
    });
    await this.#events.joined(agent, msg.running);
    return agent;
  }

  #tokenOk(presented: unknown): boolean {
    if (typeof presented !== "string") return false;
    const a = Buffer.from(sha256Hex(presented), "hex");
    const b = Buffer.from(sha256Hex(this.#ctx.config.joinToken), "hex");
    return timingSafeEqual(a, b);
  }

  #sweep(): void {
    const deadline = Date.now() - 3 * HEARTBEAT_MS;
    for (const agent of this.#agents.values()) {
      if (agent.lastSeen < deadline) agent.socket.close(1001, "missed heartbeats");
    }
  }

  /** Closes every channel and stops the sweeper. */
  close(): void {
    clearInterval(this.#sweeper);
    for (const agent of this.#agents.values()) agent.socket.close(1001, "server shutting down");
    this.#agents.clear();
  }
}
