/**
 * Lookups the API routes and the dashboard pages share: the app and the run
 * named in the path, integer query parameters, and the middleware that
 * loads the app of every `/apps/:app/*` API route.
 * @module
 */
import type { Context, MiddlewareHandler } from "hono";
import { NAME_PATTERN, parseRunLabel } from "../protocol/mod.ts";
import { type Auth, type AuthEnv, canUseApp } from "./auth.ts";
import { HttpError } from "./http_error.ts";
import type { AppRow, RunRow, Store } from "./store/mod.ts";

/** Hono variables of an app-scoped API route: the token and the app of the path. */
export type AppEnv = { Variables: { auth: Auth; app: AppRow } };

/** Middleware: loads the app named in the path into `c.get("app")` (404, 403 as {@link loadApp}). */
export function appLoader(store: Store): MiddlewareHandler<AppEnv> {
  return async (c, next) => {
    c.set("app", await loadApp(c, store));
    await next();
  };
}

/** The app named in the path, or 404; 403 when the token may not use it. */
export async function loadApp<E extends AuthEnv>(c: Context<E>, store: Store): Promise<AppRow> {
  const name = c.req.param("app") ?? "";
  const auth = c.get("auth");
  if (!NAME_PATTERN.test(name)) throw new HttpError(404, "not_found", `No app named "${name}"`);
  if (!canUseApp(auth, name)) {
    throw new HttpError(403, "forbidden", `This token may not use app "${name}"`);
  }
  const app = await store.appByName(name);
  if (!app) throw new HttpError(404, "not_found", `No app named "${name}"`);
  return app;
}

/** The run named in the path (`one-off-N` or its id) of this app, or 404. */
export async function loadRun(c: Context, store: Store, app: AppRow): Promise<RunRow> {
  const ref = c.req.param("run") ?? "";
  const number = parseRunLabel(ref);
  const run = number !== null
    ? await store.runByNumber(app.id, number)
    : /^[0-9a-f-]{36}$/.test(ref)
    ? await store.runById(ref)
    : null;
  if (!run || run.app_id !== app.id) {
    throw new HttpError(404, "not_found", `No run "${ref}" in app "${app.name}"`);
  }
  return run;
}

/** An integer query parameter within bounds, or the default. */
export function intParam(c: Context, name: string, fallback: number, max: number): number {
  const raw = c.req.query(name);
  if (raw === undefined || raw === "") return fallback;
  const value = Number(raw);
  if (!Number.isInteger(value) || value < 0) {
    throw new HttpError(422, "invalid", `Query parameter "${name}" must be a non-negative integer`);
  }
  return Math.min(value, max);
}
