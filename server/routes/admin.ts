/**
 * Admin routes: agents and tokens.
 * @module
 */
import { Hono } from "hono";
import { type AgentInfo, NAME_PATTERN } from "../../protocol/mod.ts";
import type { AgentHub } from "../agent_hub.ts";
import { type AuthEnv, newToken, requireAdmin, sha256Hex } from "../auth.ts";
import type { ServerContext } from "../context.ts";
import { HttpError, jsonBody } from "../http_error.ts";

/** Routes `/agents` and `/tokens`. */
export function adminRoutes(ctx: ServerContext, hub: AgentHub): Hono<AuthEnv> {
  const { store } = ctx;
  const app = new Hono<AuthEnv>();

  app.get("/agents", async (c) => {
    requireAdmin(c.get("auth"));
    const agents: AgentInfo[] = (await store.listAgents()).map((a) => {
      const live = hub.get(a.id);
      return {
        id: a.id,
        name: a.name,
        state: live ? "online" : "offline",
        since: a.since.toISOString(),
        version: a.version,
        capacity: a.capacity,
        running: live?.active.size ?? 0,
        sandbox: a.sandbox,
        attach: `${a.attach_tls ? "tls" : "tcp"}://${a.attach_host}:${a.attach_port}`,
        warnings: a.warnings,
      };
    });
    return c.json({ agents });
  });

  app.post("/tokens", async (c) => {
    const auth = c.get("auth");
    requireAdmin(auth);
    const body = await jsonBody(c);
    const role = body.role ?? "member";
    if (role !== "member" && role !== "admin") {
      throw new HttpError(
        422,
        "invalid_role",
        `Unknown role "${String(role)}": use member or admin`,
      );
    }
    const apps = Array.isArray(body.apps) ? body.apps : [];
    for (const name of apps) {
      if (typeof name !== "string" || !NAME_PATTERN.test(name) || !await store.appByName(name)) {
        throw new HttpError(404, "not_found", `No app named "${String(name)}"`);
      }
    }
    if (role === "member" && apps.length === 0) {
      throw new HttpError(422, "invalid", "A member token needs at least one app (--app APP)");
    }
    const name = typeof body.name === "string" && body.name.trim()
      ? body.name.trim().slice(0, 64)
      : `${role}-${crypto.randomUUID().slice(0, 8)}`;
    const token = newToken();
    await store.createToken({ hash: sha256Hex(token), role, apps: apps as string[], name });
    for (const appName of apps as string[]) {
      const row = await store.appByName(appName);
      await store.addEvent({
        app_id: row?.id ?? null,
        app_name: appName,
        actor: auth.actor,
        kind: "token.created",
        data: { role, name },
      });
    }
    if (apps.length === 0) {
      await store.addEvent({
        app_id: null,
        app_name: null,
        actor: auth.actor,
        kind: "token.created",
        data: { role, name },
      });
    }
    return c.json({ token, role, apps, name }, 201);
  });

  return app;
}
