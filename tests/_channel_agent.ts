/**
 * An agent that is only its control channel: a real WebSocket to a real
 * server, driven by the test message by message, recording what the server
 * says. For tests about delivery (acks, nacks), where a sandbox adds nothing.
 * @module
 */
import {
  AGENT_CHANNEL_PATH,
  type AgentMessage,
  type LogRecord,
  type ServerMessage,
} from "../protocol/mod.ts";
import { waitFor } from "./_wait.ts";

/** A connected channel-only agent; dispose it to close the channel. */
export interface ChannelAgent extends AsyncDisposable {
  /** Everything the server sent, oldest first. */
  received: ServerMessage[];
  send(msg: AgentMessage): void;
  /** Waits for the first message since index `from` that `match` accepts. */
  next<T extends ServerMessage["type"]>(
    type: T,
    options?: { from?: number; match?: (msg: Extract<ServerMessage, { type: T }>) => boolean },
  ): Promise<Extract<ServerMessage, { type: T }>>;
}

/**
 * Joins `url` as agent `name` (enrolled by the join token, or by a
 * credential from an earlier `enrolled`) and waits for its welcome.
 */
export async function channelAgent(
  url: string,
  options: { joinToken?: string; credential?: string; name?: string; running?: string[] },
): Promise<ChannelAgent> {
  const socket = new WebSocket(`${url.replace(/^http/, "ws")}${AGENT_CHANNEL_PATH}`);
  const received: ServerMessage[] = [];
  socket.onmessage = (event) => received.push(JSON.parse(String(event.data)));
  await new Promise((resolve, reject) => {
    socket.onopen = resolve;
    socket.onerror = reject;
  });
  const send = (msg: AgentMessage) => socket.send(JSON.stringify(msg));
  send({
    type: "hello",
    ...(options.credential !== undefined
      ? { credential: options.credential }
      : { token: options.joinToken ?? "" }),
    name: options.name ?? "channel-agent",
    version: "test",
    capacity: 10,
    sandbox: "bwrap",
    attach: { host: "127.0.0.1", port: 5000, tls: false },
    running: options.running ?? [],
    ended: [],
    warnings: [],
  });
  const agent: ChannelAgent = {
    received,
    send,
    async next(type, opts = {}) {
      type M = Extract<ServerMessage, { type: typeof type }>;
      return await waitFor(
        () =>
          received.slice(opts.from ?? 0).find((m): m is M =>
            m.type === type && (opts.match?.(m as M) ?? true)
          ),
        { message: `the server to send ${type}`, seen: () => received.slice(-3) },
      );
    },
    async [Symbol.asyncDispose]() {
      if (socket.readyState === WebSocket.CLOSED) return;
      const closed = new Promise((resolve) => socket.onclose = resolve);
      socket.close();
      await closed;
    },
  };
  await agent.next("welcome");
  return agent;
}

/** `count` numbered log records from `first`, each line `width` bytes or so. */
export function records(first: number, count: number, width = 20): LogRecord[] {
  const pad = "x".repeat(Math.max(0, width - 12));
  return Array.from({ length: count }, (_, i) => ({
    seq: first + i,
    stream: "stdout" as const,
    ts: Date.now(),
    line: `line ${first + i} ${pad}`,
  }));
}
