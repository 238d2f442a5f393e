/**
 * Where agents' log and audit batches are stored and acknowledged.
 * @module
 */
import { type AgentMessage, isTerminal, runLabel } from "../protocol/mod.ts";
import type { ConnectedAgent } from "./agent_directory.ts";
import type { ServerContext } from "./context.ts";
import { logKey } from "./signals.ts";

type LogsMessage = Extract<AgentMessage, { type: "logs" }>;
type AuditMessage = Extract<AgentMessage, { type: "audit" }>;

/** The app and label a run's lines are filed under, and the agent that runs it. */
interface Owner {
  agentId: string;
  appId: number;
  label: string;
}

/** Stores detached output and audit chunks, acknowledging each batch once committed. */
export class Ingest {
  #ctx: ServerContext;
  // A detached run ships many batches: look its owner up once, not per
  // batch, while it is live. Forgotten when it ends or its agent leaves.
  #owners = new Map<string, Owner>();

  constructor(ctx: ServerContext) {
    this.#ctx = ctx;
  }

  /** Stores a batch of log lines of a run of this agent, then acknowledges it. */
  async logs(agent: ConnectedAgent, msg: LogsMessage): Promise<void> {
    const owner = await this.#owner(agent, msg.runId);
    if (!owner) {
      this.#ctx.metrics?.logLinesDropped.inc({ reason: "unknown_run" }, msg.records.length);
      return;
    }
    const source = owner.label;
    const lines = msg.records.map((r) => ({
      run_id: msg.runId,
      seq: r.seq,
      ts: new Date(r.ts),
      source,
      stream: r.stream,
      line: r.line,
    }));
    if (lines.length > 0) await this.#ctx.store.appendLogs(owner.appId, lines);
    agent.send({ type: "logs_ack", runId: msg.runId, batch: msg.batch });
    this.#ctx.signals.notify(logKey(owner.appId));
  }

  /** Stores an audit chunk of a run of this agent, then acknowledges it. */
  async audit(agent: ConnectedAgent, msg: AuditMessage): Promise<void> {
    const run = await this.#ctx.store.runById(msg.runId);
    // A chunk of a run that no longer exists (its app was destroyed) is
    // acknowledged and dropped, or the agent would keep it forever.
    if (run && run.agent_id === agent.id) {
      await this.#ctx.audit.receive(msg.runId, msg.seq, msg.data);
    }
    agent.send({ type: "audit_ack", runId: msg.runId, seq: msg.seq });
  }

  /** The run has ended: later batches look it up again. */
  ended(runId: string): void {
    this.#owners.delete(runId);
  }

  /** The agent's channel closed: its runs may end without a word. */
  left(agent: ConnectedAgent): void {
    for (const [runId, owner] of this.#owners) {
      if (owner.agentId === agent.id) this.#owners.delete(runId);
    }
  }

  async #owner(agent: ConnectedAgent, runId: string): Promise<Owner | undefined> {
    const known = this.#owners.get(runId);
    if (known) return known.agentId === agent.id ? known : undefined;
    const run = await this.#ctx.store.runById(runId);
    if (!run || run.agent_id !== agent.id) return undefined;
    const owner = { agentId: agent.id, appId: run.app_id, label: runLabel(run.number) };
    // Only live runs are kept: the last batches of an ended one are few.
    if (!isTerminal(run.state)) this.#owners.set(runId, owner);
    return owner;
  }
}
