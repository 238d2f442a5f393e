/**
 * The agents with an open control channel: the hub adds and removes them,
 * the run engine picks one to place a run on. Neither owns the other.
 * @module
 */
import type { Cluster } from "./cluster/mod.ts";
import {
  type AttachEndpoint,
  hasLabels,
  type Labels,
  type ServerMessage,
} from "../protocol/mod.ts";

/** An agent with an open control channel. */
export interface ConnectedAgent {
  id: string;
  name: string;
  /** An admin approved it (or the server auto-approves): only then is a run placed on it. */
  approved: boolean;
  capacity: number;
  endpoint: AttachEndpoint;
  /** Runs placed on it and not ended. */
  active: Set<string>;
  /** When the hub last heard from it (clock milliseconds). */
  lastSeen: number;
  /** It said it is stopping: no new run is placed on it. */
  draining: boolean;
  /** Its labels (as approved): a run of an app that requires labels goes only to an agent with them. */
  labels?: Labels;
  /** Sends a message; false when the channel is no longer open. */
  send(msg: ServerMessage): boolean;
  /** Closes the channel. */
  close(code: number, reason: string): void;
}

/** What the run engine needs to reach agents. */
export interface AgentDirectory {
  /**
   * The least loaded approved agent with free capacity that is not
   * draining, and has every label of `labels`, if any.
   */
  pick(labels?: Labels): ConnectedAgent | undefined;
  /** A connected agent by id. */
  get(id: string): ConnectedAgent | undefined;
}

/** The set of connected agents, one per id. */
export class ConnectedAgents implements AgentDirectory {
  #agents = new Map<string, ConnectedAgent>();

  /** Every connected agent. */
  list(): ConnectedAgent[] {
    return [...this.#agents.values()];
  }

  get(id: string): ConnectedAgent | undefined {
    return this.#agents.get(id);
  }

  pick(labels: Labels = {}): ConnectedAgent | undefined {
    let best: ConnectedAgent | undefined;
    for (const agent of this.#agents.values()) {
      if (!agent.approved || agent.draining || agent.active.size >= agent.capacity) continue;
      if (!hasLabels(agent.labels ?? {}, labels)) continue;
      if (!best || agent.active.size / agent.capacity < best.active.size / best.capacity) {
        best = agent;
      }
    }
    return best;
  }

  /** Adds an agent; returns the one it replaces (same id), if any. */
  add(agent: ConnectedAgent): ConnectedAgent | undefined {
    const previous = this.#agents.get(agent.id);
    this.#agents.set(agent.id, agent);
    return previous;
  }

  /** Removes an agent unless a newer connection has replaced it; true if removed. */
  remove(agent: ConnectedAgent): boolean {
    if (this.#agents.get(agent.id) !== agent) return false;
    this.#agents.delete(agent.id);
    return true;
  }

  /** Forgets every agent. */
  clear(): void {
    this.#agents.clear();
  }
}

/**
 * Sends a control message to an agent wherever its channel is: here, or on
 * another server of the store; false when no server holds it.
 */
export async function sendToAgent(
  agents: AgentDirectory,
  cluster: Cluster,
  message: { agentId: string; msg: ServerMessage },
): Promise<boolean> {
  if (agents.get(message.agentId)?.send(message.msg)) return true;
  return await cluster.sendElsewhere(message.agentId, message.msg);
}

/** The agent's channel is open here or on another live server of the store. */
export async function reachable(
  agents: AgentDirectory,
  cluster: Cluster,
  agentId: string,
): Promise<boolean> {
  return agents.get(agentId) !== undefined || await cluster.heldElsewhere(agentId);
}
