/**
 * The agent's control channel: it dials the server (so agents work behind
 * NAT), says hello with its credential (or the join token, to enrol), sends heartbeats and reconnects
 * with backoff. A server that goes silent (frozen, or a partition that
 * leaves the TCP connection half-open) is noticed: once the server has sent
 * heartbeats on a connection, no message for `silentHeartbeats` × its
 * heartbeat interval counts as a dead channel, dropped without waiting for
 * a close handshake; a connection not welcomed in time is dropped too.
 * @module
 */
import {
  AGENT_CHANNEL_PATH,
  type AgentMessage,
  decodeServerMessage,
  type ServerMessage,
} from "../protocol/mod.ts";
import { errorMessage, type Logger } from "../util/log.ts";

/** What the channel needs from the agent. */
export interface ControlHandlers {
  /** The hello to send on each (re)connect. */
  hello(): Extract<AgentMessage, { type: "hello" }>;
  /** Runs still alive, for heartbeats. */
  running(): string[];
  /** A message from the server. */
  message(msg: ServerMessage): void;
  /** The channel is up again (after welcome): resend what was not acknowledged. */
  connected(): void;
}

/** Thrown when the server refuses the agent (a wrong join token or credential, a name taken, revoked). */
export class JoinRefusedError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "JoinRefusedError";
  }
}

/** How the channel notices a dead server. */
export interface ControlOptions {
  /** Heartbeat intervals of silence after which the server counts as gone (default 3). */
  silentHeartbeats?: number;
  /** A connection not welcomed within this long is dropped and tried again (default 10 s). */
  connectTimeoutMs?: number;
}

/** One WebSocket to the server, kept open. */
export class ControlChannel {
  #url: string;
  #handlers: ControlHandlers;
  #log: Logger;
  #socket: WebSocket | null = null;
  #open = false;
  #closed = false;
  #heartbeat: ReturnType<typeof setInterval> | undefined;
  #retry: ReturnType<typeof setTimeout> | undefined;
  #backoffMs = 250;
  #silentHeartbeats: number;
  #connectTimeoutMs: number;
  #lastHeard = 0;
  #heartbeatMs = 0;
  /** The server sends heartbeats on this connection: its silence means something. */
  #serverBeats = false;
  #watchdog: ReturnType<typeof setInterval> | undefined;
  #connectTimer: ReturnType<typeof setTimeout> | undefined;
  #firstWelcome = Promise.withResolvers<void>();
  #refusal = Promise.withResolvers<never>();

  constructor(
    serverUrl: string,
    handlers: ControlHandlers,
    log: Logger,
    options: ControlOptions = {},
  ) {
    this.#silentHeartbeats = options.silentHeartbeats ?? 3;
    this.#connectTimeoutMs = options.connectTimeoutMs ?? 10_000;
    this.#url = serverUrl.replace(/^http/, "ws").replace(/\/+$/, "") + AGENT_CHANNEL_PATH;
    this.#handlers = handlers;
    this.#log = log;
    this.#refusal.promise.catch(() => {});
  }

  /**
   * Rejects with a {@link JoinRefusedError} when the server refuses this
   * agent, on the first connection or on a reconnect (its join token was
   * changed): the channel then stays closed, and the agent should stop.
   */
  get refused(): Promise<never> {
    return this.#refusal.promise;
  }

  /** Connects; resolves after the first welcome, rejects on a refusal. */
  start(): Promise<void> {
    this.#connect();
    return this.#firstWelcome.promise;
  }

  /** Sends a message; false when the channel is down. */
  send(msg: AgentMessage): boolean {
    if (!this.#open || this.#socket?.readyState !== WebSocket.OPEN) return false;
    this.#socket.send(JSON.stringify(msg));
    return true;
  }

  /** True while the server has welcomed this connection. */
  get connected(): boolean {
    return this.#open;
  }

  #connect(): void {
    if (this.#closed) return;
    const socket = new WebSocket(this.#url);
    this.#socket = socket;
    this.#serverBeats = false;
    clearTimeout(this.#connectTimer);
    this.#connectTimer = setTimeout(() => {
      if (this.#socket !== socket || this.#open) return;
      this.#log.warn("the server did not welcome this agent in time, reconnecting", {
        timeoutMs: this.#connectTimeoutMs,
      });
      this.#drop(socket);
    }, this.#connectTimeoutMs);
    socket.onopen = () => socket.send(JSON.stringify(this.#handlers.hello()));
    socket.onmessage = (event) => {
      if (this.#socket !== socket) return;
      this.#lastHeard = Date.now();
      const decoded = decodeServerMessage(String(event.data));
      if (!decoded.ok) {
        // Dropped whole: nothing of a malformed message is applied.
        this.#log.error("malformed server message dropped", { error: decoded.error });
        return;
      }
      const msg = decoded.value;
      if (msg.type === "heartbeat") {
        this.#serverBeats = true;
        return;
      }
      if (msg.type === "welcome") {
        this.#open = true;
        this.#backoffMs = 250;
        clearTimeout(this.#connectTimer);
        clearInterval(this.#heartbeat);
        this.#heartbeatMs = msg.heartbeatMs;
        this.#heartbeat = setInterval(
          () => this.send({ type: "heartbeat", running: this.#handlers.running() }),
          msg.heartbeatMs,
        );
        clearInterval(this.#watchdog);
        this.#watchdog = setInterval(() => this.#checkSilence(socket), msg.heartbeatMs);
        this.#log.info("connected to server", { url: this.#url, agentId: msg.agentId });
        if (msg.trust === "pending") {
          this.#log.warn("this agent is pending: it gets no run until an admin approves it", {
            detail: "oneoff agents approve NAME",
          });
        }
        this.#firstWelcome.resolve();
        this.#handlers.connected();
        return;
      }
      if (msg.type === "refused") {
        this.#log.error("server refused this agent", { reason: msg.reason });
        const refusal = new JoinRefusedError(`Server refused this agent: ${msg.reason}`);
        this.#firstWelcome.reject(refusal);
        this.#refusal.reject(refusal);
        this.#closed = true;
        socket.close();
        return;
      }
      try {
        this.#handlers.message(msg);
      } catch (err) {
        this.#log.error("handling a server message failed", {
          type: msg.type,
          error: errorMessage(err),
        });
      }
    };
    socket.onerror = () => {};
    socket.onclose = () => {
      if (this.#socket !== socket) return;
      this.#lost();
    };
  }

  // An older server sends no heartbeats: only a server that does is held to them.
  #checkSilence(socket: WebSocket): void {
    if (this.#socket !== socket || !this.#open || !this.#serverBeats) return;
    const silentMs = Date.now() - this.#lastHeard;
    if (silentMs < this.#silentHeartbeats * this.#heartbeatMs) return;
    this.#log.warn("the server is silent, reconnecting", { silentMs });
    this.#drop(socket);
  }

  /** Gives a connection up at once: a frozen peer would never finish a close handshake. */
  #drop(socket: WebSocket): void {
    socket.onmessage = socket.onclose = socket.onopen = null;
    try {
      socket.close();
    } catch { /* not open yet */ }
    if (this.#socket === socket) this.#lost();
  }

  #lost(): void {
    const wasOpen = this.#open;
    this.#open = false;
    this.#socket = null;
    clearInterval(this.#heartbeat);
    clearInterval(this.#watchdog);
    clearTimeout(this.#connectTimer);
    if (this.#closed) return;
    if (wasOpen) this.#log.warn("lost the server, reconnecting");
    this.#retry = setTimeout(() => this.#connect(), this.#backoffMs);
    this.#backoffMs = Math.min(this.#backoffMs * 2, 10_000);
  }

  /** Closes the channel for good. */
  close(): void {
    this.#closed = true;
    clearInterval(this.#heartbeat);
    clearInterval(this.#watchdog);
    clearTimeout(this.#connectTimer);
    clearTimeout(this.#retry);
    this.#socket?.close();
    this.#firstWelcome.promise.catch(() => {});
    this.#firstWelcome.reject(new Error("Agent closed"));
  }
}
