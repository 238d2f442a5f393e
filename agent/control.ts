/**
 * The agent's control channel: it dials the server (so agents work behind
 * NAT), says hello with the join token, sends heartbeats and reconnects
 * with backoff.
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

/** Thrown when the server refuses the agent (a wrong join token). */
export class JoinRefusedError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "JoinRefusedError";
  }
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
  #firstWelcome = Promise.withResolvers<void>();
  #refusal = Promise.withResolvers<never>();

  constructor(serverUrl: string, handlers: ControlHandlers, log: Logger) {
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
    socket.onopen = () => socket.send(JSON.stringify(this.#handlers.hello()));
    socket.onmessage = (event) => {
      const decoded = decodeServerMessage(String(event.data));
      if (!decoded.ok) {
        // Dropped whole: nothing of a malformed message is applied.
        this.#log.error("malformed server message dropped", { error: decoded.error });
        return;
      }
      const msg = decoded.value;
      if (msg.type === "welcome") {
        this.#open = true;
        this.#backoffMs = 250;
        clearInterval(this.#heartbeat);
        this.#heartbeat = setInterval(
          () => this.send({ type: "heartbeat", running: this.#handlers.running() }),
          msg.heartbeatMs,
        );
        this.#log.info("connected to server", { url: this.#url, agentId: msg.agentId });
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
      const wasOpen = this.#open;
      this.#open = false;
      clearInterval(this.#heartbeat);
      if (this.#closed) return;
      if (wasOpen) this.#log.warn("lost the server, reconnecting");
      this.#retry = setTimeout(() => this.#connect(), this.#backoffMs);
      this.#backoffMs = Math.min(this.#backoffMs * 2, 10_000);
    };
  }

  /** Closes the channel for good. */
  close(): void {
    this.#closed = true;
    clearInterval(this.#heartbeat);
    clearTimeout(this.#retry);
    this.#socket?.close();
    this.#firstWelcome.promise.catch(() => {});
    this.#firstWelcome.reject(new Error("Agent closed"));
  }
}
