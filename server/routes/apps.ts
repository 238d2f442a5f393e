/**
 * Apps, their environment and their slugs (deploys).
 * @module
 */
import { Hono } from "hono";
import { type AppInfo, NAME_PATTERN } from "../../protocol/mod.ts";
import { type AuthEnv, canUseApp, requireAdmin } from "../auth.ts";
import type { ServerContext } from "../context.ts";
import { HttpError, jsonBody, requireString } from "../http_error.ts";
import { BlobTooLargeError } from "../blob_store.ts";
import { inspectSlug, SlugError } from "../slug.ts";
import type { AppRow, Store } from "../store/mod.ts";
import { loadApp } from "./_load.ts";

const ENV_KEY = /^[A-Za-z_][A-Za-z0-9_]{0,254}$/;

async function appInfo(store: Store, app: AppRow): Promise<AppInfo> {
  const release = await store.latestRelease(app.id);
  return {
    name: app.name,
    created_at: app.created_at.toISOString(),
    release: release?.version ?? null,
    process_types: release?.process_types ?? {},
  };
}

/** Routes under `/apps`. */
export function appRoutes(ctx: ServerContext): Hono<AuthEnv> {
  const { store } = ctx;
  const app = new Hono<AuthEnv>();

  app.get("/", async (c) => {
    const auth = c.get("auth");
    const apps = (await store.listApps()).filter((a) => canUseApp(auth, a.name));
    return c.json({ apps: await Promise.all(apps.map((a) => appInfo(store, a))) });
  });

  app.post("/", async (c) => {
    const auth = c.get("auth");
    requireAdmin(auth);
    const name = requireString((await jsonBody(c)).name, "name");
    if (!NAME_PATTERN.test(name)) {
      throw new HttpError(
        422,
        "invalid_name",
        `Invalid app name "${name}": use 2-63 lowercase letters, digits and dashes, starting with a letter`,
      );
    }
    const row = await store.createApp(name);
    await store.addEvent({
      app_id: row.id,
      app_name: name,
      actor: auth.actor,
      kind: "app.created",
      data: {},
    });
    return c.json({ app: await appInfo(store, row) }, 201);
  });

  app.get("/:app", async (c) => {
    const row = await loadApp(c, store);
    return c.json({ app: await appInfo(store, row) });
  });

  app.delete("/:app", async (c) => {
    const auth = c.get("auth");
    requireAdmin(auth);
    const row = await loadApp(c, store);
    const live = await store.listRuns({
      app_id: row.id,
      states: ["starting", "running"],
      limit: 1,
    });
    if (live.length > 0) {
      throw new HttpError(
        409,
        "runs_active",
        `App "${row.name}" has one-offs running: stop them first`,
      );
    }
    await store.destroyApp(row.id);
    await store.addEvent({
      app_id: null,
      app_name: row.name,
      actor: auth.actor,
      kind: "app.destroyed",
      data: {},
    });
    return c.json({ destroyed: row.name });
  });

  app.get("/:app/env", async (c) => {
    const row = await loadApp(c, store);
    return c.json({ env: await store.getEnv(row.id) });
  });

  app.patch("/:app/env", async (c) => {
    const row = await loadApp(c, store);
    const body = await jsonBody(c);
    const set = body.set ?? {};
    const unset = body.unset ?? [];
    if (typeof set !== "object" || set === null || Array.isArray(set)) {
      throw new HttpError(422, "invalid", `Field "set" must be an object of KEY: "value"`);
    }
    if (!Array.isArray(unset)) {
      throw new HttpError(422, "invalid", `Field "unset" must be a list of keys`);
    }
    const values: Record<string, string> = {};
    for (const [key, value] of Object.entries(set)) {
      if (!ENV_KEY.test(key)) {
        throw new HttpError(422, "invalid_key", `Invalid variable name "${key}"`);
      }
      if (typeof value !== "string") {
        throw new HttpError(422, "invalid", `Value of "${key}" must be a string`);
      }
      values[key] = value;
    }
    const keys: string[] = [];
    for (const key of unset) {
      if (typeof key !== "string" || !ENV_KEY.test(key)) {
        throw new HttpError(422, "invalid_key", `Invalid variable name "${String(key)}"`);
      }
      keys.push(key);
    }
    if (Object.keys(values).length === 0 && keys.length === 0) {
      throw new HttpError(
        422,
        "invalid",
        "Nothing to change: give KEY=VALUE pairs or keys to unset",
      );
    }
    await store.updateEnv(row.id, values, keys);
    const actor = c.get("auth").actor;
    // Only keys reach the timeline: values may be secrets.
    if (Object.keys(values).length > 0) {
      await store.addEvent({
        app_id: row.id,
        app_name: row.name,
        actor,
        kind: "env.set",
        data: { keys: Object.keys(values) },
      });
    }
    if (keys.length > 0) {
      await store.addEvent({
        app_id: row.id,
        app_name: row.name,
        actor,
        kind: "env.unset",
        data: { keys },
      });
    }
    return c.json({ env: await store.getEnv(row.id) });
  });

  app.post("/:app/deploy", async (c) => {
    const row = await loadApp(c, store);
    const body = c.req.raw.body;
    if (!body) {
      throw new HttpError(422, "empty_slug", "Empty request: send the slug (.tar.gz) as the body");
    }
    let processTypes: Record<string, string> = {};
    let blob;
    try {
      blob = await ctx.blobs.put(body, {
        maxBytes: ctx.config.maxSlugBytes,
        check: async (path) => {
          processTypes = (await inspectSlug(path)).processTypes;
        },
      });
    } catch (err) {
      if (err instanceof BlobTooLargeError) {
        throw new HttpError(
          413,
          "slug_too_large",
          `Cannot deploy "${row.name}": slug is larger than ${ctx.config.maxSlugBytes} bytes`,
        );
      }
      if (err instanceof SlugError) {
        throw new HttpError(422, "bad_slug", `Cannot deploy "${row.name}": ${err.message}`);
      }
      throw err;
    }
    const actor = c.get("auth").actor;
    const release = await store.createRelease({
      app_id: row.id,
      sha256: blob.sha256,
      size: blob.size,
      process_types: processTypes,
      actor,
    });
    await store.addEvent({
      app_id: row.id,
      app_name: row.name,
      actor,
      kind: "deploy",
      data: {
        release: release.version,
        sha256: blob.sha256,
        size: blob.size,
        process_types: Object.keys(processTypes),
      },
    });
    return c.json({
      release: {
        version: release.version,
        sha256: release.sha256,
        size: release.size,
        process_types: processTypes,
      },
    }, 201);
  });

  return app;
}
