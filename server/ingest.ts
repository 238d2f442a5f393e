/**
 * Where agents' log and audit batches are stored and acknowledged: a batch
 * is acknowledged only once committed, nacked when the store failed (the
 * agent sends it again later), and a run whose end reported more lines
 * than the store holds once its batches stopped coming gets that said.
 * @module
 */
import {
  type AgentMessage,
  DEFAULT_LOG_QUOTA_BYTES,
  isTerminal,
  runLabel,
  TERMINAL_STATES,
} from "../protocol/mod.ts";
import { type Clock, realClock, type TimerId } from "../util/clock.ts";
import { errorMessage } from "../util/log.ts";
import type { ConnectedAgent } from "./agent_directory.ts";
import type { ServerContext } from "./context.ts";
import { auditKey, logKey, runKey } from "./signals.ts";
import { AppLogQuotaWatch } from "./log_quota.ts";

type LogsMessage = Extract<AgentMessage, { type: "logs" }>;
type AuditMessage = Extract<AgentMessage, { type: "audit" }>;

/** The app and label a run's lines are filed under, and the agent that runs it. */
interface Owner {
  agentId: string;
  appId: number;
  label: string;
}

/** How far back a restarted server looks for ended runs whose lines it had not checked. */
const RESUME_WITHIN_MS = 24 * 3600_000;

/** The words of the note on a run with missing lines. */
const MISSING_NOTE = "log lines missing";

/**
 * Bytes past a run's quota the server still stores: the agent's own lines
 * (the quota marker, why the run ended) come after the quota is full.
 */
export const QUOTA_SLACK_BYTES = 64 * 1024;

/** Runs whose stored bytes are remembered; the oldest is forgotten beyond it. */
const MAX_USAGE_RUNS = 10_000;

/** What the server stored of a run's output, and what it counted past the quota. */
interface Usage {
  bytes: number;
  /** The highest seq counted: a batch sent again is not counted twice. */
  seq: number;
  overLines: number;
  overBytes: number;
}

/** What an {@link Ingest} is built with. */
export interface IngestOptions {
  /** Time for the missing-lines check; the real clock by default. */
  clock?: Clock;
}

/** How long a failed batch not sent again holds back its run's later batches. */
const HOLD_MS = 120_000;

/** Stores detached output and audit chunks, acknowledging each batch once committed. */
export class Ingest {
  #ctx: ServerContext;
  #clock: Clock;
  // A detached run ships many batches: look its owner up once, not per
  // batch, while it is live. Forgotten when it ends or its agent leaves.
  #owners = new Map<string, Owner>();
  /** The last batch of each run being stored, so that the next one waits for it. */
  #batches = new Map<string, Promise<void>>();
  /**
   * Per run, the first batch that could not be stored: later ones are nacked
   * too until it is, or they would be stored first (the agent sends them on
   * while it waits to send the failed one again) and read before it. A hold
   * lapses once that batch has not come again for HOLD_MS (an agent that
   * lost it, its spool file removed, must not stall the run's lines).
   */
  #held = new Map<string, { batch: number; seen: number }>();
  /** Ended runs whose reported line count is not all stored yet: checked once batches stop. */
  #awaited = new Map<string, { lines: number; timer: TimerId }>();
  // The agent keeps a run within its quota; this checks it again, so an
  // agent that does not (old, buggy, hostile) cannot fill the data dir.
  // Kept past the run's end (its last batches come later). A restart
  // loses nothing: a run's first batch since reads what the store holds
  // of it (the stored bytes, and what was counted past the quota, which
  // is saved with every batch that counts some).
  #usage = new Map<string, Promise<Usage>>();
  /** The per-app log quota, checked as an app's lines come in. */
  readonly appQuota: AppLogQuotaWatch;

  constructor(ctx: ServerContext, options: IngestOptions = {}) {
    this.#ctx = ctx;
    this.#clock = options.clock ?? realClock;
    this.appQuota = new AppLogQuotaWatch(ctx);
    this.started = this.#resume().catch((err) =>
      ctx.log.error("resuming the missing-lines checks failed", { error: errorMessage(err) })
    );
  }

  /** Resolves once the checks of runs ended before a restart are set again. */
  readonly started: Promise<void>;

  // Runs that ended recently with a line count: a restart between their end
  // and their check must not hide a shortfall.
  async #resume(): Promise<void> {
    const since = this.#clock.now() - RESUME_WITHIN_MS;
    const runs = await this.#ctx.store.listRuns({ states: [...TERMINAL_STATES], limit: 1000 });
    for (const run of runs) {
      if (run.log_lines === null || run.log_lines === 0 || this.#awaited.has(run.id)) continue;
      if ((run.ended_at?.getTime() ?? 0) < since || run.reason?.includes(MISSING_NOTE)) continue;
      this.#expect(run.id, run.log_lines);
    }
  }

  /**
   * Stores a batch of log lines of a run of this agent, then acknowledges
   * it; a store failure is nacked, never acknowledged. A run's batches are
   * stored one after the other, in the order they came: on PostgreSQL two
   * at once took their ids interleaved, and `logs` (which reads by id)
   * showed the lines out of order.
   */
  logs(agent: ConnectedAgent, msg: LogsMessage): Promise<void> {
    const before = this.#batches.get(msg.runId);
    // A failure of the one before is its own (nacked or reported there).
    const stored = (before ?? Promise.resolve()).catch(() => {}).then(() =>
      this.#storeLogs(agent, msg)
    );
    this.#batches.set(msg.runId, stored);
    const forget = () => {
      if (this.#batches.get(msg.runId) === stored) this.#batches.delete(msg.runId);
    };
    stored.then(forget, forget);
    return stored;
  }

  async #storeLogs(agent: ConnectedAgent, msg: LogsMessage): Promise<void> {
    const log = this.#ctx.log.child("ingest");
    let held = this.#held.get(msg.runId);
    if (held !== undefined && this.#clock.now() - held.seen > HOLD_MS) {
      this.#held.delete(msg.runId);
      held = undefined;
    }
    if (held !== undefined && msg.batch > held.batch) {
      this.#nackLogs(agent, msg, new Error(`batch ${held.batch} of the run is not stored yet`));
      return;
    }
    let owner: Owner | "gone" | "other";
    try {
      owner = await this.#owner(agent, msg.runId);
    } catch (err) {
      this.#nackLogs(agent, msg, err);
      return;
    }
    if (owner === "gone") {
      // Its app was destroyed: acknowledged and dropped, or the agent would
      // keep the batch forever.
      this.#ctx.metrics?.logLinesDropped.inc({ reason: "run_gone" }, msg.records.length);
      this.#held.delete(msg.runId);
      agent.send({ type: "logs_ack", runId: msg.runId, batch: msg.batch });
      return;
    }
    if (owner === "other") {
      this.#ctx.metrics?.logLinesDropped.inc({ reason: "not_owner" }, msg.records.length);
      log.warn("log batch refused: the run is not this agent's", {
        agent: agent.name,
        run: msg.runId,
        batch: msg.batch,
      });
      return;
    }
    const source = owner.label;
    let within: LogsMessage["records"];
    try {
      within = await this.#withinQuota(msg);
    } catch (err) {
      this.#nackLogs(agent, msg, err);
      return;
    }
    const lines = within.map((r) => ({
      run_id: msg.runId,
      seq: r.seq,
      ts: new Date(r.ts),
      source,
      stream: r.stream,
      line: r.line,
    }));
    try {
      if (lines.length > 0) await this.#ctx.store.appendLogs(owner.appId, lines);
    } catch (err) {
      this.#nackLogs(agent, msg, err);
      return;
    }
    if (held?.batch === msg.batch) this.#held.delete(msg.runId);
    agent.send({ type: "logs_ack", runId: msg.runId, batch: msg.batch });
    this.#ctx.signals.notify(logKey(owner.appId));
    this.appQuota.stored(owner.appId, lines.reduce((n, l) => n + l.line.length + 1, 0));
    const awaited = this.#awaited.get(msg.runId);
    if (awaited) this.#expect(msg.runId, awaited.lines);
  }

  /**
   * The batch's records that fit the run's quota (plus the slack for the
   * agent's own lines); the rest are counted, and the first of them is
   * replaced by a marker line saying so.
   */
  async #withinQuota(msg: LogsMessage): Promise<LogsMessage["records"]> {
    const quota = (this.#ctx.config.logQuotaBytes ?? DEFAULT_LOG_QUOTA_BYTES) + QUOTA_SLACK_BYTES;
    const usage = await this.#usageOf(msg.runId);
    const overBefore = usage.overLines;
    const kept: LogsMessage["records"] = [];
    for (const r of msg.records) {
      // Sent again (a lost ack): counted the first time; stored once by seq.
      if (r.seq <= usage.seq) {
        if (usage.overLines === 0) kept.push(r);
        continue;
      }
      usage.seq = r.seq;
      const bytes = r.line.length + 1;
      if (usage.overLines === 0 && usage.bytes + bytes <= quota) {
        usage.bytes += bytes;
        kept.push(r);
        continue;
      }
      if (usage.overLines === 0) {
        kept.push({ ...r, stream: "stderr", line: serverQuotaMarker(quota) });
        this.#ctx.log.child("ingest").warn("a run's output went past its log quota", {
          run: msg.runId,
          quotaBytes: quota,
        });
      }
      usage.overLines++;
      usage.overBytes += bytes;
      this.#ctx.metrics?.logLinesDropped.inc({ reason: "quota" });
    }
    if (usage.overLines > overBefore) {
      // Saved before the batch is acknowledged: a restart keeps the count.
      const { seq, overLines: lines, overBytes: bytes } = usage;
      await this.#ctx.store.saveLogOverage(msg.runId, { seq, lines, bytes });
    }
    return kept;
  }

  /** A run's usage: in memory while it is known, else what the store holds of it. */
  #usageOf(runId: string): Promise<Usage> {
    let usage = this.#usage.get(runId);
    if (!usage) {
      usage = this.#ctx.store.runLogUsage(runId);
      this.#usage.set(runId, usage);
      // A failed read is not remembered: the batch is nacked and read again.
      usage.catch(() => this.#usage.delete(runId));
      const oldest = this.#usage.keys().next().value;
      if (this.#usage.size > MAX_USAGE_RUNS && oldest !== undefined) this.#usage.delete(oldest);
    }
    return usage;
  }

  #nackLogs(agent: ConnectedAgent, msg: LogsMessage, err: unknown): void {
    const reason = `The server could not store the batch: ${errorMessage(err)}`;
    this.#ctx.log.child("ingest").warn("log batch not stored", {
      agent: agent.name,
      run: msg.runId,
      batch: msg.batch,
      error: errorMessage(err),
    });
    agent.send({ type: "logs_nack", runId: msg.runId, batch: msg.batch, reason });
    const held = this.#held.get(msg.runId);
    if (held === undefined || msg.batch <= held.batch) {
      this.#held.set(msg.runId, { batch: msg.batch, seen: this.#clock.now() });
    }
  }

  /** Stores an audit chunk of a run of this agent, then acknowledges it; failures are nacked. */
  async audit(agent: ConnectedAgent, msg: AuditMessage): Promise<void> {
    try {
      const { store } = this.#ctx;
      // A run of a destroyed app lives on in the audit trail: its last chunks still count.
      const run = await store.runById(msg.runId) ??
        (await store.archivedRun(msg.runId))?.run ?? null;
      if (run && run.agent_id !== agent.id) {
        this.#ctx.log.child("ingest").warn("audit chunk refused: the run is not this agent's", {
          agent: agent.name,
          run: msg.runId,
          seq: msg.seq,
        });
        return;
      }
      // A chunk of a run nothing knows of (its audit retention ended) is
      // acknowledged and dropped, or the agent would keep it forever.
      if (run) {
        await this.#ctx.audit.receive(msg.runId, msg.seq, msg.data, {
          timeoutMs: run.timeout_ms,
        });
        this.#ctx.signals.notify(auditKey(msg.runId));
      }
    } catch (err) {
      this.#ctx.log.child("ingest").warn("audit chunk not stored", {
        agent: agent.name,
        run: msg.runId,
        seq: msg.seq,
        error: errorMessage(err),
      });
      const reason = `The server could not store the chunk: ${errorMessage(err)}`;
      agent.send({ type: "audit_nack", runId: msg.runId, seq: msg.seq, reason });
      return;
    }
    agent.send({ type: "audit_ack", runId: msg.runId, seq: msg.seq });
  }

  /**
   * The run has ended, having produced `lines` log lines when the agent
   * says so: later batches look it up again, and once none came for
   * `logsSettleMs` a shortfall is written on the run and its timeline.
   */
  ended(runId: string, lines?: number): void {
    this.#owners.delete(runId);
    if (lines !== undefined && lines > 0) this.#expect(runId, lines);
  }

  /** The agent's channel closed: its runs may end without a word. */
  left(agent: ConnectedAgent): void {
    for (const [runId, owner] of this.#owners) {
      if (owner.agentId === agent.id) this.#owners.delete(runId);
    }
  }

  /** Stops the missing-lines timers. */
  close(): void {
    for (const { timer } of this.#awaited.values()) this.#clock.clearTimeout(timer);
    this.#awaited.clear();
  }

  #expect(runId: string, lines: number): void {
    this.#clock.clearTimeout(this.#awaited.get(runId)?.timer);
    const timer = this.#clock.setTimeout(() => {
      this.#awaited.delete(runId);
      this.#checkLines(runId, lines).catch((err) =>
        this.#ctx.log.error("checking a run's lines failed", {
          run: runId,
          error: errorMessage(err),
        })
      );
    }, this.#ctx.config.logsSettleMs);
    this.#awaited.set(runId, { lines, timer });
  }

  async #checkLines(runId: string, lines: number): Promise<void> {
    const { store } = this.#ctx;
    const stored = await store.countRunLogs(runId);
    const over = await this.#usageOf(runId);
    // Lines the server counted past the quota are said as such, not as missing.
    const counted = over && over.overLines > 0 ? over.overLines - 1 : 0;
    if (stored + counted >= lines && counted === 0) return;
    const run = await store.runById(runId);
    if (!run || !isTerminal(run.state)) return;
    const missing = lines - stored - counted;
    const notes = [];
    if (counted > 0) {
      notes.push(
        `${over?.overLines} lines (${over?.overBytes} bytes) past the log quota not stored`,
      );
    }
    if (missing > 0) notes.push(`${missing} of ${lines} ${MISSING_NOTE}`);
    if (notes.length === 0) return;
    const note = notes.join("; ");
    if (run.reason?.includes(note)) return;
    await store.updateRun(run.id, [run.state], {
      state: run.state,
      reason: run.reason ? `${run.reason}; ${note}` : note,
    });
    const app = await store.appById(run.app_id);
    await store.addEvent({
      app_id: run.app_id,
      app_name: app?.name ?? null,
      actor: run.actor,
      kind: "run.logs_missing",
      data: {
        run: runLabel(run.number),
        missing,
        lines,
        ...(counted > 0 ? { overQuota: over?.overLines } : {}),
      },
    });
    this.#ctx.log.child("ingest").warn("a run's log lines are missing", {
      run: runId,
      missing,
      lines,
    });
    this.#ctx.signals.notify(runKey(run.id));
  }

  async #owner(agent: ConnectedAgent, runId: string): Promise<Owner | "gone" | "other"> {
    const known = this.#owners.get(runId);
    if (known) return known.agentId === agent.id ? known : "other";
    const run = await this.#ctx.store.runById(runId);
    if (!run) return "gone";
    if (run.agent_id !== agent.id) return "other";
    const owner = { agentId: agent.id, appId: run.app_id, label: runLabel(run.number) };
    // Only live runs are kept: the last batches of an ended one are few.
    if (!isTerminal(run.state)) this.#owners.set(runId, owner);
    return owner;
  }
}

/** The line stored in place of a run's output past the quota the server checks. */
function serverQuotaMarker(quotaBytes: number): string {
  return `oneoff: the server's log quota of ${quotaBytes} bytes reached; further lines are counted, not stored`;
}
