/**
 * What the servers sharing one store coordinate through: wake-ups for long
 * polls, control messages to agents connected to another server, which
 * server does the periodic work, and which agents each one holds. SQLite
 * has one server ({@link localCluster}); PostgreSQL any number
 * (`postgres.ts`: LISTEN/NOTIFY, an advisory lock, a presence table).
 * @module
 */
import type { ServerMessage } from "../../protocol/mod.ts";
import type { SignalTransport } from "../signals.ts";

export { openPostgresCluster, type PostgresClusterOptions } from "./postgres.ts";

/** The servers sharing a store, as one server sees them. */
export interface Cluster {
  /** This server's id, new at each start. */
  readonly serverId: string;
  /** Other servers may share the store (PostgreSQL). */
  readonly shared: boolean;
  /** Carries signals to the other servers; none when alone. */
  readonly transport: SignalTransport | undefined;
  /** This server does the periodic work (sweeps, timeouts, lost agents) now. */
  isLeader(): boolean;
  /**
   * Sends a control message to an agent held by another live server: true
   * once that server said it passed it on, false when none did in time.
   */
  sendElsewhere(agentId: string, msg: ServerMessage): Promise<boolean>;
  /**
   * Calls `deliver` with each control message another server sent to an
   * agent; it returns true when it passed the message on (the sender is told).
   */
  onAgentMessage(deliver: (agentId: string, msg: ServerMessage) => boolean): void;
  /** Records that this server holds these agents' channels now. */
  touchAgents(agentIds: string[]): Promise<void>;
  /** This server no longer holds the agent's channel. */
  releaseAgent(agentId: string): Promise<void>;
  /** Another live server holds the agent's channel. */
  heldElsewhere(agentId: string): Promise<boolean>;
  /** The URL other servers reach a live server at; null when it is not live. */
  serverUrl(serverId: string): Promise<string | null>;
  /** Records the URL other servers reach this one at (once it listens). */
  advertise(url: string): Promise<void>;
  /** The check value stored under `name`, stored first as `check` when there is none. */
  keyCheck(name: string, check: string): Promise<string>;
  /** Every stored check value by name. */
  keyChecks(): Promise<Map<string, string>>;
  /** Replaces a check value (a key was rotated on purpose). */
  setKeyCheck(name: string, check: string): Promise<void>;
  close(): Promise<void>;
}

/** One server alone on its store (SQLite): everything is in this process. */
export function localCluster(): Cluster {
  return {
    serverId: crypto.randomUUID(),
    shared: false,
    transport: undefined,
    isLeader: () => true,
    sendElsewhere: () => Promise.resolve(false),
    onAgentMessage: () => {},
    touchAgents: () => Promise.resolve(),
    releaseAgent: () => Promise.resolve(),
    heldElsewhere: () => Promise.resolve(false),
    serverUrl: () => Promise.resolve(null),
    advertise: () => Promise.resolve(),
    keyCheck: (_name, check) => Promise.resolve(check),
    keyChecks: () => Promise.resolve(new Map()),
    setKeyCheck: () => Promise.resolve(),
    close: () => Promise.resolve(),
  };
}
