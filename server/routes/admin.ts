/**
 * Admin routes: agents and tokens.
 * @module
 */
import { Hono } from "hono";
import {
  type AgentsReply,
  decodeCreateTokenBody,
  NAME_PATTERN,
  type TokenCreatedReply,
  type WhoamiReply,
} from "../../protocol/mod.ts";
import type { AgentHub } from "../agent_hub.ts";
import { type AuthEnv, newToken, requireAdmin, sha256Hex } from "../auth.ts";
import type { ServerContext } from "../context.ts";
import { decodeBody, HttpError } from "../http_error.ts";
import { agentInfo } from "../views.ts";

/** Routes `/whoami`, `/agents` and `/tokens`. */
export function adminRoutes(ctx: ServerContext, hub: AgentHub): Hono<AuthEnv> {
  const { store } = ctx;
  const app = new Hono<AuthEnv>();

  app.get("/whoami", (c) => {
    const { token } = c.get("auth");
    return c.json({ name: token.name, role: token.role, apps: token.apps } satisfies WhoamiReply);
  });

  app.get("/agents", async (c) => {
    requireAdmin(c.get("auth"));
    const agents = (await store.listAgents()).map((a) => {
      const live = hub.get(a.id);
      return agentInfo(a, live ? { running: live.active.size } : null);
    });
    return c.json({ agents } satisfies AgentsReply);
  });

  app.post("/tokens", async (c) => {
    const auth = c.get("auth");
    requireAdmin(auth);
    const body = await decodeBody(c, decodeCreateTokenBody);
    const role = body.role ?? "member";
    const apps = body.apps ?? [];
    for (const name of apps) {
      if (!NAME_PATTERN.test(name) || !await store.appByName(name)) {
        throw new HttpError(404, "not_found", `No app named "${name}"`);
      }
    }
    if (role === "member" && apps.length === 0) {
      throw new HttpError(422, "invalid", "A member token needs at least one app (--app APP)");
    }
    const name = body.name?.trim()
      ? body.name.trim().slice(0, 64)
      : `${role}-${crypto.randomUUID().slice(0, 8)}`;
    const token = newToken();
    await store.createToken({ hash: sha256Hex(token), role, apps, name });
    for (const appName of apps) {
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
    return c.json({ token, role, apps, name } satisfies TokenCreatedReply, 201);
  });

  return app;
}
