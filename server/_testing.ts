/**
 * Test support: an in-process server app on a fresh SQLite store.
 * @module
 */
import { DEFAULT_SIZES } from "../protocol/mod.ts";
import { createLogger } from "../util/log.ts";
import { registerJoinToken } from "./join_tokens.ts";
import { createApp, type ServerApp } from "./app.ts";
import { newToken, sha256Hex } from "./auth.ts";
import { AuditService } from "./audit/mod.ts";
import { BlobStore } from "./blob_store.ts";
import type { ServerConfig, ServerContext } from "./context.ts";
import { Signals } from "./signals.ts";
import { localCluster } from "./cluster/mod.ts";
import { openStore } from "./store/open.ts";

/** A server app for `app.request()` tests, with an admin token. */
export interface TestServer extends AsyncDisposable {
  server: ServerApp;
  ctx: ServerContext;
  admin: string;
  dir: string;
  /** Sends a request with a token (the admin's by default). */
  call(method: string, path: string, body?: unknown, token?: string): Promise<Response>;
}

/**
 * A server context on a new temp dir (SQLite, silent log, small limits),
 * with `overrides` applied to the settings: what in-process server tests
 * build on.
 */
export async function testContext(
  prefix: string,
  overrides: Partial<ServerConfig> = {},
): Promise<{ ctx: ServerContext; dir: string }> {
  const dir = await Deno.makeTempDir({ prefix });
  const store = await openStore(`sqlite:${dir}/oneoff.db`);
  const config: ServerConfig = {
    dataDir: dir,
    maxSlugBytes: 10 * 1024 * 1024,
    maxUploadBytes: 10 * 1024 * 1024,
    maxSlugUnpackedBytes: 64 * 1024 * 1024,
    maxTimeoutMs: 24 * 3600_000,
    maxRunsPerApp: 10,
    queueTimeoutMs: 60_000,
    attachWindowMs: 60_000,
    idleTimeoutMs: 60_000,
    maxDurationMs: 3600_000,
    sizes: { ...DEFAULT_SIZES },
    joinToken: "join_test",
    joinTokenFile: null,
    joinTokenUses: null,
    joinTokenTtlMs: null,
    autoApprove: true,
    agentGraceMs: 1000,
    logsSettleMs: 60_000,
    heartbeatMs: 5_000,
    auditKeyFile: `${dir}/audit.key`,
    ...overrides,
  };
  const ctx: ServerContext = {
    config,
    store,
    blobs: new BlobStore(`${dir}/blobs`),
    log: createLogger("test", { level: "silent" }),
    signals: new Signals(),
    cluster: localCluster(),
    audit: await AuditService.open(store, config.auditKeyFile),
  };
  await registerJoinToken(store, config);
  return { ctx, dir };
}

/** Creates a test server in a temp dir; dispose it to clean up. */
export async function testServer(overrides: Partial<ServerConfig> = {}): Promise<TestServer> {
  const { ctx, dir } = await testContext("oneoff-server-test-", overrides);
  const { store } = ctx;
  const admin = newToken();
  await store.createToken({ hash: sha256Hex(admin), role: "admin", apps: [], name: "admin" });
  const server = createApp(ctx);
  return {
    server,
    ctx,
    admin,
    dir,
    call(method, path, body, token = admin) {
      const headers: Record<string, string> = { authorization: `Bearer ${token}` };
      let payload: BodyInit | undefined;
      if (
        body instanceof Uint8Array || body instanceof ReadableStream || typeof body === "string"
      ) {
        payload = body as BodyInit;
      } else if (body !== undefined) {
        payload = JSON.stringify(body);
        headers["content-type"] = "application/json";
      }
      return Promise.resolve(
        server.app.request(path, {
          method,
          headers,
          ...(payload !== undefined ? { body: payload } : {}),
        }),
      );
    },
    async [Symbol.asyncDispose]() {
      server.close();
      await store.close();
      await Deno.remove(dir, { recursive: true });
    },
  };
}

/** A gzip tar slug made with the system's tar from files given as text. */
export async function makeSlug(files: Record<string, string>): Promise<Uint8Array<ArrayBuffer>> {
  const dir = await Deno.makeTempDir({ prefix: "oneoff-slug-" });
  try {
    for (const [name, text] of Object.entries(files)) {
      const path = `${dir}/src/${name}`;
      await Deno.mkdir(path.replace(/\/[^/]+$/, ""), { recursive: true });
      await Deno.writeTextFile(path, text);
    }
    await Deno.mkdir(`${dir}/src`, { recursive: true });
    const out = await new Deno.Command("tar", {
      args: ["-czf", `${dir}/slug.tar.gz`, "-C", `${dir}/src`, "."],
    }).output();
    if (!out.success) throw new Error(new TextDecoder().decode(out.stderr));
    return await Deno.readFile(`${dir}/slug.tar.gz`);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}
