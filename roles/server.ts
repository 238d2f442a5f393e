/**
 * `oneoff server`.
 * @module
 */
import { parseDuration, UsageError } from "../cli/_io.ts";
import { startServer } from "../server/mod.ts";
import { flags, waitForSignal } from "./_flags.ts";
import { limitFlags } from "./_server_limits.ts";

/** `--join-token-uses`, `--join-token-ttl`, `--auto-approve`. */
export function joinTokenFlags(v: Record<string, unknown>) {
  const config: { joinTokenUses?: number; joinTokenTtlMs?: number; autoApprove?: boolean } = {};
  const uses = v["join-token-uses"];
  if (typeof uses === "string") {
    const n = Number(uses);
    if (!Number.isInteger(n) || n < 1) {
      throw new UsageError(`Invalid --join-token-uses "${uses}": give a positive integer`);
    }
    config.joinTokenUses = n;
  }
  const ttl = v["join-token-ttl"];
  if (typeof ttl === "string") {
    try {
      config.joinTokenTtlMs = parseDuration(ttl);
    } catch {
      throw new UsageError(`Invalid --join-token-ttl "${ttl}": give e.g. 1h, 30m or 7d`);
    }
  }
  // A boolean flag, whatever the parsed values' declared type says.
  if (v["auto-approve"]) config.autoApprove = true;
  return config;
}

/** Runs the server until SIGINT/SIGTERM. */
export async function server(args: string[]): Promise<number> {
  const v = flags("server", args);
  const config: Record<string, unknown> = {};
  if (v["join-token"]) config.joinToken = v["join-token"];
  Object.assign(config, joinTokenFlags(v));
  if (v["max-slug-bytes"]) config.maxSlugBytes = Number(v["max-slug-bytes"]);
  if (v["audit-key-file"]) config.auditKeyFile = v["audit-key-file"];
  Object.assign(config, limitFlags(v));
  const maxRunsPerApp = v["max-runs-per-app"];
  if (maxRunsPerApp !== undefined) {
    const max = Number(maxRunsPerApp);
    if (!Number.isInteger(max) || max < 1) {
      throw new UsageError(
        `Invalid --max-runs-per-app "${maxRunsPerApp}": give a positive integer`,
      );
    }
    config.maxRunsPerApp = max;
  }
  const running = await startServer({
    http: v.http ?? "0.0.0.0:8080",
    dataDir: v["data-dir"] ?? "./.oneoff",
    ...(v.database ? { database: v.database } : {}),
    config,
  });
  if (running.newAdminToken) {
    console.log(
      `Admin token (shown once, also in ${running.ctx.config.dataDir}/admin.token): ${running.newAdminToken}`,
    );
  }
  console.log(
    `Agents join with: oneoff agent --server ${running.url} --join-token ${running.joinToken}`,
  );
  if (!running.ctx.config.autoApprove) {
    console.log("Then approve each one: oneoff agents approve NAME (see oneoff agents)");
  }
  await waitForSignal();
  await running.close();
  return 0;
}
