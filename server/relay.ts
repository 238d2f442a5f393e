/**
 * The relay through the server: a CLI that cannot reach an agent's port 5000
 * opens a WebSocket here; the agent carrying the run is asked (on its control
 * channel) to dial back a WebSocket of its own for this one session, and the
 * two legs are joined. The server forwards bytes it knows nothing about, each
 * leg under its own credit (protocol/relay.ts), so what it holds per relay
 * is bounded by the windows: 2 × RELAY_WINDOW received and not yet
 * forwarded, plus what the downstream credit lets sit in a socket's buffer.
 * @module
 */
import { randomBytes } from "node:crypto";
import { Hono } from "hono";
import {
  AGENT_RELAY_PATH,
  dialRelay,
  isTerminal,
  RELAY_DIAL_TIMEOUT_MS,
  RELAY_KEEPALIVE_MS,
  RELAY_MAX_MESSAGE,
  RelayConn,
  runLabel,
} from "../protocol/mod.ts";
import { type Clock, realClock, type TimerId } from "../util/clock.ts";
import { type AgentDirectory, reachable, sendToAgent } from "./agent_directory.ts";
import { clientAddress, type FailureLimiter, sha256Hex } from "./auth.ts";
import type { ServerContext } from "./context.ts";
import { HttpError } from "./http_error.ts";
import { type AppEnv, loadRun } from "./_lookup.ts";

/** What a {@link RelayHub} is built with. */
export interface RelayHubOptions {
  /** The connected agents, to ask the run's agent to dial back. */
  agents: AgentDirectory;
  /** Failed agent credentials per address, shared with the other agent routes. */
  limiter: FailureLimiter;
  /** Time the agent has to dial back (default RELAY_DIAL_TIMEOUT_MS). */
  dialTimeoutMs?: number;
  clock?: Clock;
}

interface Pending {
  agentId: string;
  runId: string;
  label: string;
  address: string;
  client: RelayConn;
  timer: TimerId;
}

interface Relay {
  client: RelayConn;
  agent: RelayConn;
}

/** Pairs CLIs' relay sockets with their agents' dial-backs, and forwards between them. */
export class RelayHub {
  #ctx: ServerContext;
  #agents: AgentDirectory;
  #limiter: FailureLimiter;
  #dialTimeoutMs: number;
  #clock: Clock;
  #pending = new Map<string, Pending>();
  #active = new Set<Relay>();

  constructor(ctx: ServerContext, options: RelayHubOptions) {
    this.#ctx = ctx;
    this.#agents = options.agents;
    this.#limiter = options.limiter;
    this.#dialTimeoutMs = options.dialTimeoutMs ?? RELAY_DIAL_TIMEOUT_MS;
    this.#clock = options.clock ?? realClock;
  }

  /** Relays joined and forwarding. */
  get active(): number {
    return this.#active.size;
  }

  /** Bytes all relays hold right now (both legs, both directions). */
  get queuedBytes(): number {
    let total = 0;
    for (const relay of this.#active) {
      total += relay.client.bufferedBytes + relay.agent.bufferedBytes;
    }
    for (const pending of this.#pending.values()) total += pending.client.bufferedBytes;
    return total;
  }

  /** The CLI's route: `GET /apps/:app/runs/:run/relay` (token and app checked before). */
  routes(): Hono<AppEnv> {
    const app = new Hono<AppEnv>();
    app.get("/:run/relay", async (c) => {
      const run = await loadRun(c, this.#ctx.store, c.get("app"));
      const label = runLabel(run.number);
      if (!run.attached) throw new HttpError(409, "not_attached", `${label} is a detached run`);
      if (isTerminal(run.state)) {
        throw new HttpError(
          409,
          "not_attachable",
          `${label} is ${run.state}: it cannot be attached to`,
        );
      }
      if (!run.agent_id) {
        throw new HttpError(
          409,
          "not_attachable",
          `${label} is ${run.state}: no agent carries it yet`,
        );
      }
      const agentId = run.agent_id;
      if (!await reachable(this.#agents, this.#ctx.cluster, agentId)) {
        throw new HttpError(503, "agent_unreachable", `The agent of ${label} is not connected`);
      }
      const agentName = this.#agents.get(agentId)?.name ??
        (await this.#ctx.store.agentById(agentId))?.name ?? agentId;
      if (c.req.header("upgrade")?.toLowerCase() !== "websocket") {
        throw new HttpError(426, "upgrade_required", "The relay is a WebSocket");
      }
      const address = clientAddress(c);
      // No ping timeout on the CLI's leg (Deno's default is 120 s): a CLI
      // whose output is paused (a pager, a full pipe) holds back the stream,
      // and a ping queued behind it would never be answered; on the direct
      // path such a client waits as long as it likes, and so it does here.
      // Keepalives for idle proxies go as relay messages instead, never seen by the session.
      const { socket, response } = Deno.upgradeWebSocket(c.req.raw, { idleTimeout: 0 });
      const client = new RelayConn(socket, { keepaliveMs: RELAY_KEEPALIVE_MS });
      // The dial-back may reach another server (through a load balancer):
      // the id says which one holds this leg (see acceptAgent).
      const relayId = `${randomBytes(18).toString("base64url")}.${this.#ctx.cluster.serverId}`;
      const timer = this.#clock.setTimeout(() => {
        if (!this.#pending.delete(relayId)) return;
        this.#log.warn("relay not opened by the agent in time", { run: label, agent: agentName });
        client.fail(
          `The agent "${agentName}" did not open the relay within ${this.#dialTimeoutMs} ms: ` +
            "it may be older than the server, or unable to reach the server's URL",
        );
      }, this.#dialTimeoutMs);
      this.#pending.set(relayId, {
        agentId,
        runId: run.id,
        label,
        address,
        client,
        timer,
      });
      client.ended.then(() => {
        if (this.#pending.delete(relayId)) this.#clock.clearTimeout(timer);
      });
      const open = { type: "open_relay", relayId, runId: run.id, clientAddress: address } as const;
      sendToAgent(this.#agents, this.#ctx.cluster, { agentId, msg: open }).catch(() => false)
        .then((sent) => {
          if (sent) return;
          this.#pending.delete(relayId);
          this.#clock.clearTimeout(timer);
          client.fail(`The agent of ${label} is not connected`);
        });
      return response;
    });
    return app;
  }

  /**
   * The agent's dial-back, `GET AGENT_RELAY_PATH/:id`, authenticated by its
   * own credential as bearer; the relay must be one this agent was asked for.
   */
  async acceptAgent(req: Request, relayId: string, address: string): Promise<Response> {
    const presented = req.headers.get("authorization")?.replace(/^Bearer /, "") ?? "";
    const hash = sha256Hex(presented);
    const row = presented ? await this.#ctx.store.agentByCredential(hash) : null;
    if (row?.trust !== "approved") {
      if (await this.#limiter.failed(address, hash)) {
        throw new HttpError(
          429,
          "rate_limited",
          "Too many invalid agent credentials: wait a minute",
        );
      }
      throw new HttpError(401, "unauthorized", "Not the credential of an approved agent");
    }
    const pending = this.#pending.get(relayId);
    const holder = relayId.split(".")[1];
    if (!pending && holder && holder !== this.#ctx.cluster.serverId && this.#ctx.cluster.shared) {
      return await forwardRelay(this.#ctx, req, { relayId, holder, bearer: presented });
    }
    if (!pending || pending.agentId !== row.id) {
      throw new HttpError(
        404,
        "not_found",
        "No such relay: it expired, was used, or is another agent's",
      );
    }
    if (req.headers.get("upgrade")?.toLowerCase() !== "websocket") {
      throw new HttpError(426, "upgrade_required", "The relay is a WebSocket");
    }
    // One use: taken before the upgrade, so a second dial finds nothing.
    this.#pending.delete(relayId);
    this.#clock.clearTimeout(pending.timer);
    const { socket, response } = Deno.upgradeWebSocket(req, { idleTimeout: 30 });
    this.#join(pending, new RelayConn(socket, { keepaliveMs: RELAY_KEEPALIVE_MS }), row.name);
    return response;
  }

  #join(pending: Pending, agent: RelayConn, agentName: string): void {
    const { client, label } = pending;
    const relay: Relay = { client, agent };
    this.#active.add(relay);
    const started = this.#clock.now();
    this.#log.info("relay opened", { run: label, agent: agentName, address: pending.address });
    const metrics = this.#ctx.metrics;
    const count = (direction: "in" | "out") => (n: number) =>
      metrics?.relayBytes.inc({ direction }, n);
    const up = pump(client, agent, count("in"));
    const down = pump(agent, client, count("out"));
    // A clean close reaches the other leg once what it sent has been passed
    // on (a TCP FIN after the data); a lost leg is said at once, with its
    // reason (a reset, which waits for nothing).
    agent.ended.then(async (end) => {
      if (!end.clean) return client.fail(`The agent's side of the relay ended: ${end.reason}`);
      await down;
      client.close();
    });
    client.ended.then(async (end) => {
      if (!end.clean) return agent.fail(`The client's side of the relay ended: ${end.reason}`);
      await up;
      agent.close();
    });
    Promise.all([client.ended, agent.ended, up, down]).then(([c, a, bytesIn, bytesOut]) => {
      this.#active.delete(relay);
      const outcome = c.clean && a.clean ? "closed" : "failed";
      metrics?.relays.inc({ outcome });
      this.#log.info("relay closed", {
        run: label,
        agent: agentName,
        outcome,
        bytesIn,
        bytesOut,
        seconds: (this.#clock.now() - started) / 1000,
        ...(outcome === "failed" ? { reason: a.clean ? c.reason : a.reason } : {}),
      });
    });
  }

  get #log() {
    return this.#ctx.log.child("relay");
  }

  /** Closes every relay, pending or joined (the server stops). */
  close(): void {
    for (const pending of this.#pending.values()) {
      this.#clock.clearTimeout(pending.timer);
      pending.client.fail("The server is shutting down");
    }
    this.#pending.clear();
    for (const relay of this.#active) {
      relay.client.fail("The server is shutting down");
      relay.agent.fail("The server is shutting down");
    }
  }
}

/**
 * An agent's dial-back for a relay whose client leg is on another server:
 * passed on, frame for frame, over a WebSocket to that server's own
 * dial-back route (which checks the credential again and joins the legs).
 * What waits here is bounded by the legs' end-to-end credit.
 */
async function forwardRelay(
  ctx: ServerContext,
  req: Request,
  target: { relayId: string; holder: string; bearer: string },
): Promise<Response> {
  const base = await ctx.cluster.serverUrl(target.holder);
  if (!base) {
    throw new HttpError(
      404,
      "not_found",
      "No such relay: the server holding its client is gone",
    );
  }
  if (req.headers.get("upgrade")?.toLowerCase() !== "websocket") {
    throw new HttpError(426, "upgrade_required", "The relay is a WebSocket");
  }
  let upstream: WebSocket;
  try {
    upstream = await dialRelay(
      `${base.replace(/^http/, "ws")}${AGENT_RELAY_PATH}/${encodeURIComponent(target.relayId)}`,
      { headers: { authorization: `Bearer ${target.bearer}` }, timeoutMs: 5000 },
    );
  } catch (err) {
    throw new HttpError(
      502,
      "relay_unreachable",
      `Cannot reach the server holding the relay's client at "${base}": ${(err as Error).message}`,
    );
  }
  const { socket, response } = Deno.upgradeWebSocket(req, { idleTimeout: 30 });
  socket.binaryType = upstream.binaryType = "arraybuffer";
  const early: (string | ArrayBuffer)[] = [];
  upstream.onmessage = (e) => {
    if (socket.readyState === WebSocket.OPEN) socket.send(e.data);
    else early.push(e.data);
  };
  socket.onopen = () => {
    for (const data of early.splice(0)) socket.send(data);
  };
  socket.onmessage = (e) => {
    if (upstream.readyState === WebSocket.OPEN) upstream.send(e.data);
  };
  // A close code that cannot be sent on (1005, 1006: none, or lost) becomes 1011.
  const pass = (code: number) => code === 1000 || (code >= 3000 && code < 5000) ? code : 1011;
  socket.onclose = (e) => {
    if (upstream.readyState < WebSocket.CLOSING) upstream.close(pass(e.code), e.reason);
  };
  upstream.onclose = (e) => {
    if (socket.readyState < WebSocket.CLOSING) socket.close(pass(e.code), e.reason);
  };
  socket.onerror = upstream.onerror = () => {};
  ctx.log.child("relay").info("relay dial-back passed to the server holding its client", {
    server: target.holder,
  });
  return response;
}

/** Copies `from` to `to` until `from` ends (then half-closes `to`); resolves to the bytes copied. */
async function pump(from: RelayConn, to: RelayConn, counted: (n: number) => void): Promise<number> {
  const buf = new Uint8Array(RELAY_MAX_MESSAGE);
  let total = 0;
  try {
    while (true) {
      const n = await from.read(buf);
      if (n === null) break;
      let off = 0;
      while (off < n) off += await to.write(buf.subarray(off, n));
      total += n;
      counted(n);
    }
    await to.closeWrite();
  } catch {
    // One leg failed: its end handler closes the other with the reason.
  }
  return total;
}
