/**
 * Watching a running attached session: who watches which run (its agent is
 * told the count, and each who came or went, see `watchers` on the channel),
 * and the feed a watcher is shown, which is the session's recording itself,
 * read from the store chunk by chunk as the ingest stores them and wakes
 * the watchers through `Signals` (`auditKey`). Nothing of the session is
 * held here beyond the chunk being sent; nothing is written in clear.
 * @module
 */
import { isTerminal, runLabel, type WatchLine } from "../protocol/mod.ts";
import { type AgentDirectory, sendToAgent } from "./agent_directory.ts";
import type { Cluster } from "./cluster/mod.ts";
import type { ServerContext } from "./context.ts";
import { auditKey, runKey } from "./signals.ts";
import type { RunRow } from "./store/mod.ts";

/** How a feed waits and when it gives up. */
export interface FeedOptions {
  /** Start after the chunks stored now rather than from the session's start. */
  fromNow: boolean;
  /** Aborted when the watcher goes away. */
  signal: AbortSignal;
  /** A keepalive line after this long with nothing to send (default 15 s). */
  keepaliveMs?: number;
  /** How long after the run's end its final chunk may still come (default 5 s). */
  finalWaitMs?: number;
}

// A line now and then: proxies close a response that says nothing for a minute.
const KEEPALIVE_MS = 15_000;
const FINAL_WAIT_MS = 5_000;

/**
 * The watchers of each run on this server, and their agent told of each
 * change, wherever its channel is (here or on another server of the store:
 * each server tells its own count, the agent adds them up).
 */
export class Watchers {
  #agents: AgentDirectory;
  #cluster: Cluster;
  #runs = new Map<string, Set<symbol>>();

  constructor(agents: AgentDirectory, cluster: Cluster) {
    this.#agents = agents;
    this.#cluster = cluster;
  }

  /** How many watch any run now. */
  get total(): number {
    let n = 0;
    for (const set of this.#runs.values()) n += set.size;
    return n;
  }

  /** How many watch `runId` now. */
  count(runId: string): number {
    return this.#runs.get(runId)?.size ?? 0;
  }

  /** `actor` starts watching `run`: returns the function that ends it (idempotent). */
  join(run: RunRow, actor: string): () => void {
    const id = Symbol(actor);
    let set = this.#runs.get(run.id);
    if (!set) this.#runs.set(run.id, set = new Set());
    set.add(id);
    this.#tell(run, { joined: actor });
    let left = false;
    return () => {
      if (left) return;
      left = true;
      set.delete(id);
      if (set.size === 0 && this.#runs.get(run.id) === set) this.#runs.delete(run.id);
      this.#tell(run, { left: actor });
    };
  }

  /** An agent came back (or to this server): it is told again who watches its runs. */
  rejoined(agentId: string, runIds: Iterable<string>): void {
    const agent = this.#agents.get(agentId);
    for (const runId of runIds) {
      const count = this.count(runId);
      if (count > 0) {
        agent?.send({ type: "watchers", runId, count, server: this.#cluster.serverId });
      }
    }
  }

  #tell(run: RunRow, change: { joined?: string; left?: string }): void {
    if (!run.agent_id) return;
    const msg = {
      type: "watchers" as const,
      runId: run.id,
      count: this.count(run.id),
      server: this.#cluster.serverId,
      ...change,
    };
    // Not reached (no server holds the agent now): it is told again when it comes back.
    sendToAgent(this.#agents, this.#cluster, { agentId: run.agent_id, msg }).catch(() => false);
  }
}

/** Why a run cannot be watched, in one line; null when it can. */
export function unwatchable(run: RunRow, app: string): string | null {
  const label = runLabel(run.number);
  if (!run.attached) {
    return `Cannot watch ${label}: it runs detached, with no session; follow its output with ` +
      `oneoff logs -a ${app} --filter ${label} -f`;
  }
  if (isTerminal(run.state)) {
    return `Cannot watch ${label}: it has ended (${run.state}); replay it with ` +
      `oneoff audit show -a ${app} ${label}`;
  }
  return null;
}

/**
 * The lines a watcher of `run` is shown: `start` once the session has
 * started, its output and resizes as its chunks are stored, `end` with the
 * run's end. Stops early, without `end`, when `signal` aborts or the server
 * closes.
 */
export async function* watchFeed(
  ctx: ServerContext,
  first: RunRow,
  options: FeedOptions,
): AsyncGenerator<WatchLine> {
  const { signals, audit, store } = ctx;
  const { signal } = options;
  const keepaliveMs = options.keepaliveMs ?? KEEPALIVE_MS;
  const aborted = new Promise<false>((resolve) =>
    signal.aborted ? resolve(false) : signal.addEventListener("abort", () => resolve(false))
  );
  // One key at a time: a waiter left behind on another key would stay until its timeout.
  const wait = (key: string, timeoutMs = keepaliveMs) =>
    Promise.race([signals.wait(key, timeoutMs), aborted]);
  const stopped = () => signal.aborted || signals.closed;

  // Attached, not started yet: its user has not attached; the watch begins when they do.
  let run: RunRow | null = first;
  while (run.started_at === null && !isTerminal(run.state)) {
    // Armed before the read, so that a change meanwhile still wakes it.
    const woken = wait(runKey(run.id));
    run = await store.runById(first.id);
    if (run === null) return;
    if (run.started_at !== null || isTerminal(run.state)) break;
    if (!await woken) yield { type: "keepalive" };
    if (stopped()) return;
  }
  if (run.started_at === null) {
    // It ended without a session (nobody attached in time): there is nothing to show.
    yield { type: "end", state: run.state, exit_code: run.exit_code, reason: run.reason };
    return;
  }
  let after = options.fromNow ? await audit.lastSeq(run.id) : -1;
  yield {
    type: "start",
    run: runLabel(run.number),
    cols: run.cols,
    rows: run.rows,
    tty: run.tty,
    from: options.fromNow ? "now" : "start",
  };
  let t0: number | null = null;
  let final = false;
  let endsBy: number | null = null;
  while (!stopped()) {
    // Armed before the read, so that a chunk stored meanwhile still wakes it. The final
    // chunk wakes it (then the run's end does); without one (its agent died), the run's
    // state is looked at again after each keepalive.
    const woken = final
      ? wait(runKey(run.id))
      : wait(auditKey(run.id), endsBy === null ? keepaliveMs : Math.max(0, endsBy - Date.now()));
    const chunks = await audit.chunksAfter(run.id, after);
    for (const chunk of chunks) {
      if (chunk.seq > after + 1 && after >= 0) {
        yield { type: "problem", message: missing(after + 1, chunk.seq - 1) };
      }
      after = chunk.seq;
      if (chunk.data === null) {
        yield { type: "problem", message: `Chunk ${chunk.seq} of the recording cannot be read` };
        continue;
      }
      const { data } = chunk;
      t0 ??= data.t0;
      for (const [ms, kind, value] of data.events) {
        const t = Math.max(0, data.t0 + ms - t0);
        if (kind === "o") yield { type: "o", t, data: value };
        else if (kind === "r") {
          const [cols, rows] = value.split("x").map(Number);
          if (Number.isInteger(cols) && Number.isInteger(rows)) {
            yield { type: "r", t, cols: cols!, rows: rows! };
          }
        }
      }
      if (data.final === true) final = true;
    }
    if (chunks.length > 0 && !final) continue;
    run = await store.runById(run.id) ?? run;
    if (isTerminal(run.state)) {
      if (final) break;
      // The final chunk comes around the run's end; after a while it is not waited for.
      if (endsBy === null) {
        endsBy = Date.now() + (options.finalWaitMs ?? FINAL_WAIT_MS);
        continue;
      }
      if (Date.now() >= endsBy) break;
    }
    if (!await woken && !stopped()) yield { type: "keepalive" };
  }
  if (stopped()) return;
  yield { type: "end", state: run.state, exit_code: run.exit_code, reason: run.reason };
}

function missing(from: number, to: number): string {
  return from === to
    ? `Chunk ${from} of the recording is missing`
    : `Chunks ${from} to ${to} of the recording are missing`;
}
