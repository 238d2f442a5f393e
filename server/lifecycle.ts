/**
 * The data lifecycle: a periodic sweep (once at start, then hourly) that
 * enforces the retention of app logs (by age, lines and bytes: the per-app
 * quota of `log_quota.ts`), ended runs and audit recordings, and
 * collects releases and blobs nothing needs any more. Each deletion is a
 * loop of bounded store batches, so a big logs table is never locked long.
 * @module
 */
import { type Clock, realClock, type TimerId } from "../util/clock.ts";
import { errorMessage } from "../util/log.ts";
import type { ServerContext } from "./context.ts";
import { enforceAppLogQuota } from "./log_quota.ts";

const DAY = 86_400_000;

/** How long things are kept; every duration in ms. */
export interface LifecycleSettings {
  /** App log lines older than this go. */
  logRetentionMs: number;
  /** Beyond this many lines per app, the oldest go. */
  logMaxLinesPerApp: number;
  /** Ended runs' rows go this long after their end (their timeline events stay). */
  runRetentionMs: number;
  /** Audit recordings, and who ran what, go this long after their last record. */
  auditRetentionMs: number;
  /** Releases older than each app's newest this many lose their slug (and row, once no run refers to it). */
  keepReleases: number;
  /** An unreferenced blob goes only once its file is older than this. */
  blobGraceMs: number;
  /** How often the sweep runs. */
  everyMs: number;
}

/** The defaults, documented with the flags in `cli/_commands.ts`. */
export const DEFAULT_LIFECYCLE: LifecycleSettings = {
  logRetentionMs: 30 * DAY,
  logMaxLinesPerApp: 1_000_000,
  runRetentionMs: 90 * DAY,
  auditRetentionMs: 365 * DAY,
  keepReleases: 10,
  blobGraceMs: 3600_000,
  everyMs: 3600_000,
};

/**
 * Throws unless the settings hold together. An audit recording is shown
 * with its run, and its timeline entry names it: the recording must stay
 * at least as long as the run's row, never less.
 */
export function checkLifecycle(settings: LifecycleSettings): void {
  if (settings.auditRetentionMs < settings.runRetentionMs) {
    throw new Error(
      `Audit retention (${days(settings.auditRetentionMs)}) is shorter than run retention ` +
        `(${days(settings.runRetentionMs)}): give --audit-retention at least --run-retention`,
    );
  }
  if (!Number.isSafeInteger(settings.keepReleases) || settings.keepReleases < 1) {
    throw new Error(`Invalid keep-releases "${settings.keepReleases}": keep at least 1`);
  }
}

function days(ms: number): string {
  return ms % DAY === 0 ? `${ms / DAY}d` : `${ms}ms`;
}

/** What one sweep removed. */
export interface SweepReport {
  logLines: number;
  runs: number;
  auditRuns: number;
  releases: number;
  blobs: number;
  blobBytes: number;
}

/** Rows per store call: small enough that no call holds a table for long. */
const BATCH = 5000;

/** Runs the sweep on its interval; `close()` stops it. */
export class Lifecycle {
  #ctx: ServerContext;
  #clock: Clock;
  #settings: LifecycleSettings;
  #timer: TimerId | undefined;
  #running: Promise<SweepReport> | null = null;
  #pruning: Promise<void> | null = null;
  #closed = false;

  constructor(
    ctx: ServerContext,
    options: { clock?: Clock; settings?: Partial<LifecycleSettings> } = {},
  ) {
    this.#ctx = ctx;
    this.#clock = options.clock ?? realClock;
    this.#settings = { ...DEFAULT_LIFECYCLE, ...options.settings };
    checkLifecycle(this.#settings);
  }

  /** Sweeps once now (in the background), then on every interval. */
  start(): void {
    this.#timer = this.#clock.setInterval(() => this.#background(), this.#settings.everyMs);
    this.#background();
  }

  /** Stops the interval; waits for a sweep in progress. */
  async close(): Promise<void> {
    this.#closed = true;
    this.#clock.clearInterval(this.#timer);
    await this.#running?.catch(() => {});
    await this.#pruning;
  }

  #background(): void {
    // One server of a store sweeps it (server/cluster/): the others would only race it,
    // but each keeps its own blob cache (copies of blobs deleted elsewhere, stale temp files).
    if (!this.#ctx.cluster.isLeader()) {
      const before = this.#clock.now() - this.#settings.blobGraceMs;
      this.#pruning ??= this.#ctx.blobs.pruneCache(before)
        .then(
          () => {},
          (error) => this.#ctx.log.error("blob cache prune failed", { error: errorMessage(error) }),
        )
        .finally(() => this.#pruning = null);
      return;
    }
    this.sweep().catch((error) =>
      this.#ctx.log.error("lifecycle sweep failed", { error: errorMessage(error) })
    );
  }

  /** One sweep; a call while one runs gets that one's report. */
  sweep(): Promise<SweepReport> {
    this.#running ??= this.#sweep().finally(() => this.#running = null);
    return this.#running;
  }

  async #sweep(): Promise<SweepReport> {
    const { store, blobs, log } = this.#ctx;
    const s = this.#settings;
    const now = this.#clock.now();
    const report: SweepReport = {
      logLines: 0,
      runs: 0,
      auditRuns: 0,
      releases: 0,
      blobs: 0,
      blobBytes: 0,
    };
    // Runs before audit: a pruned run's metadata moves to the audit trail.
    report.runs = await this.#drain(() => store.pruneRuns(new Date(now - s.runRetentionMs), BATCH));
    report.auditRuns = await this.#drain(() =>
      store.pruneAudit(new Date(now - s.auditRetentionMs), 100)
    );
    const prune = {
      before: new Date(now - s.logRetentionMs),
      keepLines: s.logMaxLinesPerApp,
      limit: BATCH,
    };
    for (const app of await store.listApps()) {
      report.logLines += await this.#drain(() => store.pruneLogs(app.id, prune));
      // After the retention: only what is left counts against the byte quota.
      if (this.#closed) break;
      report.logLines += (await enforceAppLogQuota(this.#ctx, app)).lines;
    }
    report.releases = await this.#drain(() => store.pruneReleases(s.keepReleases, BATCH));
    // Mark after the rows are gone, sweep what is older than the grace.
    const keep = await store.blobReferences(s.keepReleases);
    const swept = await blobs.sweep(keep, now - s.blobGraceMs);
    report.blobs = swept.blobs;
    report.blobBytes = swept.bytes;
    const removed = Object.values(report).some((n) => n > 0);
    if (removed) log.info("lifecycle sweep removed", { ...report });
    else log.debug("lifecycle sweep removed nothing");
    return report;
  }

  // Calls a batch until it removes nothing, letting requests run in between.
  async #drain(batch: () => Promise<number>): Promise<number> {
    let total = 0;
    for (;;) {
      if (this.#closed) return total;
      const n = await batch();
      if (n === 0) return total;
      total += n;
      await new Promise((resolve) => setTimeout(resolve, 0));
    }
  }
}
