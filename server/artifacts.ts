/**
 * Run artifacts on the server: the agent's uploads of what a run left in
 * `/tmp/downloads` (each file streamed into the BlobStore, as `run -f`
 * uploads are, under the run's byte limit), its report of what it refused
 * (one `run.artifacts` timeline event), and the API that lists and serves
 * them to the app's members.
 * @module
 */
import { type Context, Hono } from "hono";
import {
  ARTIFACT_SHA256_HEADER,
  type ArtifactInfo,
  artifactNameProblem,
  type ArtifactsReply,
  decodeArtifactsDone,
  DEFAULT_ARTIFACT_MAX_BYTES,
  MAX_ARTIFACTS_PER_RUN,
  quoteName,
  runLabel,
} from "../protocol/mod.ts";
import { clientAddress, type FailureLimiter, sha256Hex } from "./auth.ts";
import { BlobTooLargeError } from "./blob_store.ts";
import type { ServerContext } from "./context.ts";
import { decodeBody, HttpError } from "./http_error.ts";
import { type AppEnv, loadRun } from "./_lookup.ts";
import type { AgentRow, ArtifactRow, RunRow } from "./store/mod.ts";

/** The artifact bytes one run may keep, as the server is set up. */
export function artifactMaxBytes(ctx: ServerContext): number {
  return ctx.config.maxArtifactBytes ?? DEFAULT_ARTIFACT_MAX_BYTES;
}

/** The approved agent whose credential the request carries as bearer; 401 (429 when guessing) otherwise. */
export async function approvedAgent(
  c: Context,
  ctx: ServerContext,
  limiter: FailureLimiter,
): Promise<AgentRow> {
  const presented = c.req.header("authorization")?.replace(/^Bearer /, "") ?? "";
  const hash = sha256Hex(presented);
  const agent = presented ? await ctx.store.agentByCredential(hash) : null;
  if (agent?.trust === "approved") return agent;
  if (await limiter.failed(clientAddress(c), hash)) {
    throw new HttpError(429, "rate_limited", "Too many invalid agent credentials: wait a minute");
  }
  throw new HttpError(401, "unauthorized", "Not the credential of an approved agent");
}

/** The run of the path, if the agent ran it: another agent's run is none of its business (404). */
async function agentRun(c: Context, ctx: ServerContext, agent: AgentRow): Promise<RunRow> {
  const id = c.req.param("run") ?? "";
  const run = /^[0-9a-f-]{36}$/.test(id) ? await ctx.store.runById(id) : null;
  if (!run || run.agent_id !== agent.id) {
    throw new HttpError(404, "not_found", `No run "${id}" of this agent`);
  }
  return run;
}

/** `/agent/runs/:run/...`: the agent's uploads and its report, with its credential as bearer. */
export function agentArtifactRoutes(ctx: ServerContext, limiter: FailureLimiter): Hono {
  const app = new Hono();

  app.put("/:run/artifacts/:name", async (c) => {
    const agent = await approvedAgent(c, ctx, limiter);
    const run = await agentRun(c, ctx, agent);
    const name = c.req.param("name");
    const problem = artifactNameProblem(name);
    if (problem) {
      throw new HttpError(422, "bad_name", `Cannot keep ${quoteName(name)}: ${problem}`);
    }
    // An empty file is a file too.
    const body = c.req.raw.body ?? new Blob([]).stream();
    const others = (await ctx.store.listArtifacts(run.id)).filter((a) =>
      a.name !== name && a.sha256 !== null
    );
    if (others.length >= MAX_ARTIFACTS_PER_RUN) {
      await body.cancel();
      throw new HttpError(
        413,
        "too_many_artifacts",
        `Cannot keep ${quoteName(name)}: a run keeps at most ${MAX_ARTIFACTS_PER_RUN} files`,
      );
    }
    const max = artifactMaxBytes(ctx);
    const left = max - others.reduce((sum, a) => sum + a.size, 0);
    let blob;
    try {
      blob = await ctx.blobs.put(body, { maxBytes: Math.max(0, left) });
    } catch (err) {
      if (err instanceof BlobTooLargeError) {
        throw new HttpError(
          413,
          "artifacts_too_large",
          `Cannot keep ${
            quoteName(name)
          }: the run's files are larger than the server's limit of ${max} bytes (--max-artifact-bytes)`,
        );
      }
      throw err;
    }
    const claimed = c.req.header(ARTIFACT_SHA256_HEADER);
    if (claimed !== undefined && claimed !== blob.sha256) {
      // Nothing refers to the blob: the lifecycle sweep takes it.
      throw new HttpError(
        422,
        "sha256_mismatch",
        `Cannot keep ${quoteName(name)}: the server received sha256 ${blob.sha256}, not ${claimed}`,
      );
    }
    const row: ArtifactRow = {
      run_id: run.id,
      name,
      sha256: blob.sha256,
      size: blob.size,
      refused: null,
      created_at: new Date(),
    };
    if (!await ctx.store.putArtifact(row)) throw new HttpError(404, "not_found", "The run is gone");
    return c.json({ sha256: blob.sha256, size: blob.size }, 201);
  });

  // Once every file is sent: the refusals are kept beside the files, and the timeline says it all.
  app.post("/:run/artifacts-done", async (c) => {
    const agent = await approvedAgent(c, ctx, limiter);
    const run = await agentRun(c, ctx, agent);
    const { refused } = await decodeBody(c, decodeArtifactsDone);
    // A refusal's name is quoted, and a kept file may be named like a quoted
    // name (`"b"` beside a directory `b`): the file keeps its row, and the
    // refusal is said in the timeline event below all the same.
    const keptNames = new Set(
      (await ctx.store.listArtifacts(run.id)).filter((a) => a.sha256 !== null).map((a) => a.name),
    );
    for (const { name, reason } of refused) {
      if (keptNames.has(name)) continue;
      await ctx.store.putArtifact({
        run_id: run.id,
        name,
        sha256: null,
        size: 0,
        refused: reason,
        created_at: new Date(),
      });
    }
    const kept = (await ctx.store.listArtifacts(run.id)).filter((a) => a.sha256 !== null);
    const app = await ctx.store.appById(run.app_id);
    await ctx.store.addEvent({
      app_id: run.app_id,
      app_name: app?.name ?? null,
      actor: run.actor,
      kind: "run.artifacts",
      data: {
        run: runLabel(run.number),
        files: kept.length,
        bytes: kept.reduce((sum, a) => sum + a.size, 0),
        refused: refused.map((r) => `${r.name}: ${r.reason}`),
      },
    });
    return c.json({ ok: true });
  });

  return app;
}

/** An artifact row as the API shows it. */
export function artifactInfo(row: ArtifactRow): ArtifactInfo {
  return {
    name: row.name,
    sha256: row.sha256,
    size: row.size,
    refused: row.refused,
    created_at: row.created_at.toISOString(),
  };
}

/** `/api/apps/:app/runs/:run/artifacts[/:name]`: the list, and one file's bytes (members of the app, admins). */
export function artifactRoutes(ctx: ServerContext): Hono<AppEnv> {
  const app = new Hono<AppEnv>();

  app.get("/", async (c) => {
    const run = await loadRun(c, ctx.store, c.get("app"));
    const rows = await ctx.store.listArtifacts(run.id);
    return c.json(
      { run: runLabel(run.number), artifacts: rows.map(artifactInfo) } satisfies ArtifactsReply,
    );
  });

  app.get("/:name", async (c) => {
    const row = c.get("app");
    const run = await loadRun(c, ctx.store, row);
    const name = c.req.param("name");
    const found = (await ctx.store.listArtifacts(run.id)).find((a) => a.name === name);
    const label = runLabel(run.number);
    if (!found || found.sha256 === null) {
      throw new HttpError(404, "not_found", `No file ${quoteName(name)} kept of ${label}`);
    }
    const file = await ctx.blobs.open(found.sha256);
    if (!file) {
      throw new HttpError(410, "gone", `The bytes of ${quoteName(name)} of ${label} are gone`);
    }
    const { size } = await file.stat();
    return new Response(file.readable, {
      headers: {
        "content-type": "application/octet-stream",
        "content-length": String(size),
        // Always a download, never rendered in the dashboard's origin.
        "content-disposition": `attachment; filename*=UTF-8''${encodeURIComponent(name)}`,
        "x-content-type-options": "nosniff",
        [ARTIFACT_SHA256_HEADER]: found.sha256,
      },
    });
  });

  return app;
}
