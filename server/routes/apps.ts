/**
 * Apps, their environment and their slugs (deploys).
 * @module
 */
import { Hono } from "hono";
import {
  type AppDestroyedReply,
  type AppReply,
  type AppsReply,
  decodeAppSettingsBody,
  decodeCreateAppBody,
  decodeEnvChangeBody,
  type DeployReply,
  type EnvReply,
} from "../../protocol/mod.ts";
import { canUseApp, requireAdmin } from "../auth.ts";
import type { ServerContext } from "../context.ts";
import { decodeBody, HttpError } from "../http_error.ts";
import { BlobTooLargeError } from "../blob_store.ts";
import type { AppEnv } from "../_lookup.ts";
import { inspectSlug, SlugError, SlugTooLargeError } from "../slug.ts";
import { appInfo, releaseInfo } from "../views.ts";
import { checkedSettings, settingChanges } from "../app_settings.ts";

/**
 * Routes under `/apps`: the list, create, and per app (loaded by the
 * `/apps/:app/*` middleware) show, destroy, env and deploy.
 */
export function appRoutes(ctx: ServerContext): Hono<AppEnv> {
  const { store } = ctx;
  const app = new Hono<AppEnv>();

  app.get("/", async (c) => {
    const auth = c.get("auth");
    const apps = (await store.listApps()).filter((a) => canUseApp(auth, a.name));
    return c.json(
      {
        apps: await Promise.all(apps.map((a) => appInfo(ctx, a))),
      } satisfies AppsReply,
    );
  });

  app.post("/", async (c) => {
    const auth = c.get("auth");
    requireAdmin(auth);
    const { name } = await decodeBody(c, decodeCreateAppBody);
    const row = await store.createApp(name);
    await store.addEvent({
      app_id: row.id,
      app_name: name,
      actor: auth.actor,
      kind: "app.created",
      data: {},
    });
    return c.json({ app: await appInfo(ctx, row) } satisfies AppReply, 201);
  });

  app.get("/:app", async (c) => {
    const row = c.get("app");
    return c.json({ app: await appInfo(ctx, row) } satisfies AppReply);
  });

  // Members of the app may change its durations; the network and host
  // ports only admins (see app_settings.ts for why).
  app.patch("/:app", async (c) => {
    const auth = c.get("auth");
    const before = c.get("app");
    const body = await decodeBody(c, decodeAppSettingsBody);
    const settings = checkedSettings(ctx.config, { auth, app: before, body });
    const after = await store.updateAppSettings(before.id, settings);
    if (!after) throw new HttpError(404, "not_found", `App "${before.name}" no longer exists`);
    const changes = settingChanges(ctx.config, before, after);
    if (changes.length > 0) {
      await store.addEvent({
        app_id: after.id,
        app_name: after.name,
        actor: auth.actor,
        kind: "app.settings",
        data: { changes },
      });
    }
    return c.json({ app: await appInfo(ctx, after) } satisfies AppReply);
  });

  app.delete("/:app", async (c) => {
    const auth = c.get("auth");
    requireAdmin(auth);
    const row = c.get("app");
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
    return c.json({ destroyed: row.name } satisfies AppDestroyedReply);
  });

  app.get("/:app/env", async (c) => {
    const row = c.get("app");
    return c.json({ env: await store.getEnv(row.id) } satisfies EnvReply);
  });

  app.patch("/:app/env", async (c) => {
    const row = c.get("app");
    const body = await decodeBody(c, decodeEnvChangeBody);
    const values = body.set ?? {};
    const keys = body.unset ?? [];
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
    return c.json({ env: await store.getEnv(row.id) } satisfies EnvReply);
  });

  app.post("/:app/deploy", async (c) => {
    const row = c.get("app");
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
          // Inflated as a stream and stopped at the cap (a gzip bomb is not
          // inflated whole), the temp file removed with everything else.
          const maxBytes = ctx.config.maxSlugUnpackedBytes;
          processTypes = (await inspectSlug(path, { maxBytes })).processTypes;
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
      if (err instanceof SlugTooLargeError) {
        throw new HttpError(
          413,
          "slug_too_large",
          `Cannot deploy "${row.name}": slug is larger than ${err.limit} bytes uncompressed ` +
            "(the server's --max-slug-unpacked-bytes)",
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
    return c.json({ release: releaseInfo(release) } satisfies DeployReply, 201);
  });

  return app;
}
