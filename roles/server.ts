/**
 * `oneoff server`.
 * @module
 */
import { UsageError } from "../cli/_io.ts";
import { startServer } from "../server/mod.ts";
import { flags, waitForSignal } from "./_flags.ts";
import { limitFlags } from "./_server_limits.ts";
import { lifecycleFlags } from "./_server_lifecycle.ts";

/** Runs the server until SIGINT/SIGTERM. */
export async function server(args: string[]): Promise<number> {
  if (args[0] === "backup") {
    return await (await import("./_server_backup.ts")).backup(args.slice(1));
  }
  const v = flags("server", args);
  if (v.to !== undefined) throw new UsageError("--to is for backups: server backup --to DIR");
  const config: Record<string, unknown> = {};
  if (v["join-token"]) config.joinToken = v["join-token"];
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
    lifecycle: lifecycleFlags(v),
  });
  if (running.newAdminToken) {
    console.log(
      `Admin token (shown once, also in ${running.ctx.config.dataDir}/admin.token): ${running.newAdminToken}`,
    );
  }
  console.log(
    `Agents join with: oneoff agent --server ${running.url} --join-token ${running.joinToken}`,
  );
  await waitForSignal();
  await running.close();
  return 0;
}
