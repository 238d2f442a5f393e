/**
 * Test support for the dashboard: a test server with the dashboard mounted,
 * and a client that keeps cookies like a browser and signs in through the
 * real form.
 * @module
 */
import { Hono } from "hono";
import { newToken, sha256Hex } from "../auth.ts";
import { type TestServer, testServer } from "../_testing.ts";
import type { Role } from "../../protocol/mod.ts";
import type { AppRow, ReleaseRow, RunRow, Store } from "../store/mod.ts";
import { type DashboardOptions, dashboardRoutes } from "./mod.ts";

/** A test server whose app is the dashboard alone. */
export interface DashboardTest extends AsyncDisposable {
  t: TestServer;
  app: Hono;
  /** A cookie-keeping client. */
  client(): CookieClient;
  /** A new token with this role and apps. */
  token(role: Role, apps?: string[]): Promise<string>;
  /** A client signed in with `token` (the admin's by default). */
  signedIn(token?: string): Promise<CookieClient>;
}

/** Starts a dashboard on a fresh test server. */
export async function dashboardTest(options: DashboardOptions = {}): Promise<DashboardTest> {
  const t = await testServer();
  const app = new Hono();
  app.route("/", dashboardRoutes(t.ctx, t.server.engine, options));
  const test: DashboardTest = {
    t,
    app,
    client: () => new CookieClient(app),
    async token(role, apps = []) {
      const token = newToken();
      await t.ctx.store.createToken({
        hash: sha256Hex(token),
        role,
        apps,
        name: `${role}-${apps.join("-")}`,
      });
      return token;
    },
    async signedIn(token = t.admin) {
      const client = new CookieClient(app);
      const res = await client.signIn(token);
      if (res.status !== 303) throw new Error(`Sign-in failed: HTTP ${res.status}`);
      return client;
    },
    async [Symbol.asyncDispose]() {
      await t[Symbol.asyncDispose]();
    },
  };
  return test;
}

/** Sends requests to an in-process app, keeping cookies between them. */
export class CookieClient {
  #app: Hono;
  /** The cookies it holds, by name. */
  readonly cookies: Map<string, string> = new Map();

  constructor(app: Hono) {
    this.#app = app;
  }

  /** Sends a request with the held cookies and keeps the ones it sets. */
  async request(path: string, init: RequestInit = {}): Promise<Response> {
    const headers = new Headers(init.headers);
    if (this.cookies.size > 0) {
      headers.set("cookie", [...this.cookies].map(([k, v]) => `${k}=${v}`).join("; "));
    }
    const res = await this.#app.request(path, { ...init, headers, redirect: "manual" });
    for (const line of res.headers.getSetCookie()) {
      const [pair = "", ...attrs] = line.split(";");
      const eq = pair.indexOf("=");
      const name = pair.slice(0, eq).trim();
      const value = pair.slice(eq + 1).trim();
      const gone = value === "" || attrs.some((a) => /^\s*max-age=0\s*$/i.test(a));
      if (gone) this.cookies.delete(name);
      else this.cookies.set(name, value);
    }
    return res;
  }

  /** GET and the body as text. */
  async page(path: string): Promise<{ status: number; html: string; res: Response }> {
    const res = await this.request(path);
    return { status: res.status, html: await res.text(), res };
  }

  /** A form POST. */
  post(path: string, form: Record<string, string>): Promise<Response> {
    return this.request(path, { method: "POST", body: new URLSearchParams(form) });
  }

  /** Reads the CSRF token out of a page's first form. */
  static csrfOf(html: string): string {
    const match = /name="_csrf" value="([^"]*)"/.exec(html);
    if (!match?.[1]) throw new Error("No CSRF field on the page");
    return match[1];
  }

  /** Signs in through the form, as a browser does. */
  async signIn(token: string): Promise<Response> {
    const form = await this.page("/login");
    return this.post("/login", { _csrf: CookieClient.csrfOf(form.html), token, next: "/" });
  }
}

/** An app with a release, for runs to reference. */
export async function seedApp(
  store: Store,
  name: string,
): Promise<{ app: AppRow; release: ReleaseRow }> {
  const app = await store.createApp(name);
  const release = await store.createRelease({
    app_id: app.id,
    sha256: "0".repeat(64),
    size: 2048,
    process_types: { web: "./bin/web", hello: "./bin/hello" },
    actor: "admin",
  });
  return { app, release };
}

/** Creates a pending run of `app` with `command`. */
export function seedRun(
  store: Store,
  app: AppRow,
  release: ReleaseRow,
  command: string,
  options: { attached?: boolean; env?: Record<string, string>; purpose?: string } = {},
): Promise<RunRow> {
  return store.createRun({
    id: crypto.randomUUID(),
    app_id: app.id,
    command,
    attached: options.attached ?? false,
    tty: options.attached ?? false,
    size: "M",
    release_id: release.id,
    env_overrides: options.env ?? {},
    uploads: [],
    cols: 80,
    rows: 24,
    timeout_ms: 60_000,
    actor: "admin",
    secret_sha256: null,
    expires_at: null,
    // What the run engine gives an attached run (its app's idle timeout).
    idle_timeout_ms: options.attached ? 45 * 60_000 : null,
    purpose: options.purpose ?? null,
  });
}
