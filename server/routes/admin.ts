/**
 * Admin routes: agents and tokens.
 * @module
 */
import { Hono } from "hono";
import {
  type AgentReply,
  type AgentsReply,
  decodeCreateTokenBody,
  decodeRotateJoinTokenBody,
  type JoinTokenReply,
  NAME_PATTERN,
  type TokenCreatedReply,
  type TokenReply,
  type TokensReply,
  type WhoamiReply,
} from "../../protocol/mod.ts";
import type { AgentHub } from "../agent_hub.ts";
import { type AuthEnv, newToken, requireAdmin, sha256Hex } from "../auth.ts";
import type { ServerContext } from "../context.ts";
import { decodeBody, HttpError } from "../http_error.ts";
import type { AgentRow, TokenRow } from "../store/mod.ts";
import { rotateJoinToken } from "../join_tokens.ts";
import { keyCheckValue } from "../key_checks.ts";
import { agentInfo, tokenInfo } from "../views.ts";

/** Routes `/whoami`, `/agents` and `/tokens`. */
export function adminRoutes(ctx: ServerContext, hub: AgentHub): Hono<AuthEnv> {
  const { store } = ctx;
  const app = new Hono<AuthEnv>();

  /** A token change goes on the timeline of each of its apps (or the global one). */
  async function tokenEvent(
    kind: "token.created" | "token.revoked",
    token: Pick<TokenRow, "role" | "name" | "apps">,
    actor: string,
  ): Promise<void> {
    const data = { role: token.role, name: token.name };
    for (const appName of token.apps) {
      const row = await store.appByName(appName);
      await store.addEvent({ app_id: row?.id ?? null, app_name: appName, actor, kind, data });
    }
    if (token.apps.length === 0) {
      await store.addEvent({ app_id: null, app_name: null, actor, kind, data });
    }
  }

  app.get("/whoami", (c) => {
    const { token } = c.get("auth");
    return c.json({ name: token.name, role: token.role, apps: token.apps } satisfies WhoamiReply);
  });

  // Held here, or (several servers on one store) by another live server.
  async function live(row: AgentRow): Promise<{ running: number } | null> {
    const here = hub.get(row.id);
    if (here) return { running: here.active.size };
    if (!row.online || !await ctx.cluster.heldElsewhere(row.id)) return null;
    return {
      running: await store.countRuns({ agent_id: row.id, states: ["starting", "running"] }),
    };
  }

  app.get("/agents", async (c) => {
    requireAdmin(c.get("auth"));
    const agents = [];
    for (const row of await store.listAgents()) agents.push(agentInfo(row, await live(row)));
    return c.json({ agents } satisfies AgentsReply);
  });

  // The join token only enrols; these decide what an enrolled agent may do.
  for (const [action, trust] of [["approve", "approved"], ["revoke", "revoked"]] as const) {
    app.post(`/agents/:name/${action}`, async (c) => {
      const auth = c.get("auth");
      requireAdmin(auth);
      const name = c.req.param("name");
      const row = (await store.listAgents()).find((a) => a.name === name);
      if (!row) {
        throw new HttpError(404, "not_found", `No agent named "${name}" (see oneoff agents)`);
      }
      if (row.trust === "revoked" && trust === "approved") {
        throw new HttpError(
          409,
          "revoked",
          `The agent "${name}" is revoked: it must enrol again with the join token`,
        );
      }
      if (row.trust !== trust) {
        await store.setAgentTrust(row.id, trust);
        await hub.setTrust(row.id, trust);
        await store.addEvent({
          app_id: null,
          app_name: null,
          actor: auth.actor,
          kind: trust === "approved" ? "agent.approved" : "agent.revoked",
          data: { agent: name },
        });
        ctx.log.child("admin").info(`agent ${trust}`, { agent: name, actor: auth.actor });
      }
      const agent = agentInfo({ ...row, trust }, await live(row));
      return c.json({ agent } satisfies AgentReply);
    });
  }

  app.post("/agents/join-token", async (c) => {
    const auth = c.get("auth");
    requireAdmin(auth);
    const body = await decodeBody(c, decodeRotateJoinTokenBody);
    if (
      (body.uses !== undefined && body.uses < 1) || (body.ttl_ms !== undefined && body.ttl_ms < 1)
    ) {
      throw new HttpError(422, "invalid", "uses and ttl_ms must be positive");
    }
    const limits = { uses: body.uses ?? null, ttlMs: body.ttl_ms ?? null };
    const token = await rotateJoinToken(store, ctx.config, limits);
    // The other servers of the store must be given the new file before they restart.
    await ctx.cluster.setKeyCheck("join token", keyCheckValue(token));
    await store.addEvent({
      app_id: null,
      app_name: null,
      actor: auth.actor,
      kind: "join_token.rotated",
      data: {},
    });
    const expires = limits.ttlMs === null ? null : new Date(Date.now() + limits.ttlMs);
    return c.json(
      {
        token,
        uses: limits.uses,
        expires_at: expires?.toISOString() ?? null,
      } satisfies JoinTokenReply,
      201,
    );
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
    await tokenEvent("token.created", { role, apps, name }, auth.actor);
    return c.json({ token, role, apps, name } satisfies TokenCreatedReply, 201);
  });

  app.get("/tokens", async (c) => {
    requireAdmin(c.get("auth"));
    const tokens = (await store.listTokens()).map(tokenInfo);
    return c.json({ tokens } satisfies TokensReply);
  });

  // By id, or by name when exactly one token has it. Deleting the row is
  // the revocation: every request, dashboard sessions included, looks the
  // token up anew.
  app.delete("/tokens/:ref", async (c) => {
    const auth = c.get("auth");
    requireAdmin(auth);
    const ref = c.req.param("ref");
    const all = await store.listTokens();
    const byId = /^\d+$/.test(ref) ? all.filter((t) => t.id === Number(ref)) : [];
    const found = byId.length > 0 ? byId : all.filter((t) => t.name === ref);
    if (found.length === 0) throw new HttpError(404, "not_found", `No token "${ref}"`);
    if (found.length > 1) {
      throw new HttpError(
        409,
        "conflict",
        `${found.length} tokens are named "${ref}": revoke one by its id (ids ${
          found.map((t) => t.id).join(", ")
        })`,
      );
    }
    const token = found[0]!;
    if (token.role === "admin" && all.filter((t) => t.role === "admin").length === 1) {
      throw new HttpError(
        409,
        "conflict",
        `"${token.name}" is the last admin token: create another admin token first`,
      );
    }
    if (!await store.deleteToken(token.id)) {
      throw new HttpError(404, "not_found", `No token "${ref}"`);
    }
    ctx.log.info("token revoked", { token: token.id, name: token.name, by: auth.actor });
    await tokenEvent("token.revoked", token, auth.actor);
    return c.json({ token: tokenInfo(token) } satisfies TokenReply);
  });

  return app;
}
