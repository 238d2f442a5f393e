/**
 * Files uploaded before a run (`oneoff run -f`), stored by sha256.
 * @module
 */
import { Hono } from "hono";
import type { UploadReply } from "../../protocol/mod.ts";
import { BlobTooLargeError } from "../blob_store.ts";
import type { ServerContext } from "../context.ts";
import { HttpError } from "../http_error.ts";
import type { AppEnv } from "../_lookup.ts";

/** `POST /apps/:app/uploads`: the raw body becomes a blob. */
export function uploadRoutes(ctx: ServerContext): Hono<AppEnv> {
  const app = new Hono<AppEnv>();

  app.post("/", async (c) => {
    const body = c.req.raw.body;
    if (!body) throw new HttpError(422, "empty_upload", "Empty upload");
    try {
      const blob = await ctx.blobs.put(body, { maxBytes: ctx.config.maxUploadBytes });
      return c.json({ sha256: blob.sha256, size: blob.size } satisfies UploadReply, 201);
    } catch (err) {
      if (err instanceof BlobTooLargeError) {
        throw new HttpError(
          413,
          "upload_too_large",
          `Upload is larger than the limit of ${ctx.config.maxUploadBytes} bytes`,
        );
      }
      throw err;
    }
  });

  return app;
}
