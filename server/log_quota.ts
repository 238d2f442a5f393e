/**
 * The per-app log quota (`--app-log-quota`): an app's stored log lines may
 * take at most so many bytes, so that one app cannot fill the server's
 * disk with many runs each within its own quota. Past it, the app's oldest
 * lines go first, in bounded batches, and the trim is said on the app's
 * timeline (how many lines and bytes, and the quota): never silently.
 *
 * Checked by the lifecycle sweep for every app, and by the ingest as lines
 * come in, so a flood is trimmed within seconds, not at the next hourly
 * sweep. An app's bytes are a sum over its runs' usage rows (the store keeps
 * them with every write and delete of logs); the ingest still keeps an
 * estimate (measured once, then what it stored added) and measures only
 * when the estimate passes the quota, not on every batch.
 * @module
 */
import { errorMessage } from "../util/log.ts";
import { DEFAULT_APP_LOG_QUOTA_BYTES } from "./app_settings.ts";
import type { ServerContext } from "./context.ts";
import { logKey } from "./signals.ts";
import type { AppRow } from "./store/mod.ts";

/** Lines per store call: no call holds the logs table for long. */
const BATCH = 5000;

/** The actor of the server's own timeline events. */
export const SERVER_ACTOR = "oneoff";

/** The quota in bytes the server is configured with. */
export function appLogQuotaBytes(ctx: ServerContext): number {
  return ctx.config.appLogQuotaBytes ?? DEFAULT_APP_LOG_QUOTA_BYTES;
}

/**
 * Removes the app's oldest log lines until it is within the quota again,
 * and says so on its timeline; returns what went.
 */
export async function enforceAppLogQuota(
  ctx: ServerContext,
  app: Pick<AppRow, "id" | "name">,
): Promise<{ lines: number; bytes: number; total: number }> {
  const { store } = ctx;
  const quota = appLogQuotaBytes(ctx);
  const removed = { lines: 0, bytes: 0 };
  const before = await store.appLogBytes(app.id);
  let excess = before - quota;
  while (excess > 0) {
    const batch = await store.trimLogBytes(app.id, excess, BATCH);
    if (batch.lines === 0) break;
    removed.lines += batch.lines;
    removed.bytes += batch.bytes;
    excess -= batch.bytes;
  }
  const total = before - removed.bytes;
  if (removed.lines === 0) return { ...removed, total };
  await store.addEvent({
    app_id: app.id,
    app_name: app.name,
    actor: SERVER_ACTOR,
    kind: "logs.trimmed",
    data: { ...removed, quota },
  });
  ctx.log.child("log-quota").warn("an app's logs went past its quota: the oldest lines removed", {
    app: app.name,
    ...removed,
    quotaBytes: quota,
  });
  ctx.signals.notify(logKey(app.id));
  return { ...removed, total };
}

/**
 * Estimates each app's log bytes as the ingest stores them, and checks an
 * app's quota (in the background, one check per app at a time) when the
 * estimate passes it, or when the app is first seen.
 */
export class AppLogQuotaWatch {
  #ctx: ServerContext;
  /** Bytes an app's lines take, as last measured plus what was stored since. */
  #estimate = new Map<number, number>();
  #checking = new Map<number, Promise<unknown>>();

  constructor(ctx: ServerContext) {
    this.#ctx = ctx;
  }

  /** `bytes` more of the app's lines were stored. */
  stored(appId: number, bytes: number): void {
    const known = this.#estimate.get(appId);
    this.#estimate.set(appId, (known ?? 0) + bytes);
    if (this.#checking.has(appId)) return;
    if (known !== undefined && known + bytes <= appLogQuotaBytes(this.#ctx)) return;
    const check = this.#check(appId).finally(() => this.#checking.delete(appId));
    this.#checking.set(appId, check);
  }

  /** Resolves once the checks under way are done (tests, shutdown). */
  async settled(): Promise<void> {
    await Promise.all(this.#checking.values());
  }

  async #check(appId: number): Promise<void> {
    try {
      const app = await this.#ctx.store.appById(appId);
      if (!app) return void this.#estimate.delete(appId);
      const before = this.#estimate.get(appId) ?? 0;
      const { total } = await enforceAppLogQuota(this.#ctx, app);
      // What was stored while it measured counts on top of the measure.
      this.#estimate.set(appId, total + Math.max(0, (this.#estimate.get(appId) ?? 0) - before));
    } catch (err) {
      this.#ctx.log.error("checking an app's log quota failed", {
        app: appId,
        error: errorMessage(err),
      });
    }
  }
}
