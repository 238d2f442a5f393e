/**
 * The dashboard: server-rendered pages over the same store as the API,
 * signed in with an API token and kept in a signed session cookie.
 *
 * Mount it last, at the root: `app.route("/", dashboardRoutes(ctx, engine))`.
 * It registers only its own paths (no `*` middleware), so the API keeps its
 * JSON errors and its bearer tokens.
 * @module
 */
import { Hono } from "hono";
import { FailureLimiter } from "../auth.ts";
import type { ServerContext } from "../context.ts";
import type { RunEngine } from "../run_engine.ts";
import { type DashEnv, type SessionOptions, Sessions } from "./_auth.ts";
import { agentsPage } from "./agents_page.tsx";
import { appPage } from "./app_page.tsx";
import { appsPage } from "./apps_page.tsx";
import { assets } from "./assets.ts";
import { errorPage } from "./error_page.tsx";
import { loginForm, signIn, signOut } from "./login_page.tsx";
import { runPage, stopRun } from "./run_page.tsx";
import { timelinePage } from "./timeline_page.tsx";
import { searchPage, sessionsPage } from "./sessions_page.tsx";

export { sessionAuth } from "./_auth.ts";
export type { SessionOptions } from "./_auth.ts";

/** Options of the dashboard. */
export interface DashboardOptions extends SessionOptions {
  /** Failed sign-ins per address and minute before it is refused (default 10). */
  signInLimit?: number;
}

/** The dashboard's routes, to mount at `/`. */
export function dashboardRoutes(
  ctx: ServerContext,
  engine: RunEngine,
  options: DashboardOptions = {},
): Hono<DashEnv> {
  const sessions = new Sessions(ctx, options);
  const guard = sessions.guard();
  const limiter = new FailureLimiter({ limit: options.signInLimit ?? 10 });
  const files = assets();

  const dash = new Hono<DashEnv>();
  dash.onError(errorPage(ctx.log));

  dash.get("/assets/:name", (c) => files.serve(c));
  dash.get("/login", loginForm(sessions));
  dash.post("/login", signIn(sessions, ctx.store, limiter));
  dash.post("/logout", guard, signOut(sessions));

  dash.get("/", guard, appsPage(ctx));
  dash.get("/agents", guard, agentsPage(ctx));
  dash.get("/apps/:app", guard, appPage(ctx));
  dash.get("/apps/:app/timeline", guard, timelinePage(ctx));
  dash.get("/apps/:app/audit", guard, sessionsPage(ctx));
  dash.post("/apps/:app/audit", guard, searchPage(ctx));
  dash.get("/apps/:app/runs/:run", guard, runPage(ctx));
  dash.post("/apps/:app/runs/:run/stop", guard, stopRun(ctx, engine));
  return dash;
}
