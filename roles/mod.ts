/**
 * The long-running roles of the program: `oneoff server`, `oneoff agent`
 * and `oneoff dev` (both in one process, with a demo app).
 * @module
 */
import { parseArgs } from "node:util";
import { startAgent } from "../agent/mod.ts";
import { Client } from "../cli/client.ts";
import { USAGE } from "../cli/mod.ts";
import { packDirectory } from "../cli/pack.ts";
import { parseAddr, type RunningServer, startServer } from "../server/mod.ts";
import { createLogger, errorMessage } from "../util/log.ts";

function flags(
  role: string,
  args: string[],
  options: Record<string, { type: "string" | "boolean" }>,
) {
  try {
    return parseArgs({ args, options, strict: true, allowPositionals: false }).values as Record<
      string,
      string | undefined
    >;
  } catch (e) {
    throw new Error(`${errorMessage(e).split("\n")[0]}\nUsage: ${USAGE[role]}`);
  }
}

function sandboxKind(value: string | undefined): "bwrap" | "runc" {
  if (value === undefined || value === "bwrap" || value === "runc") return value ?? "bwrap";
  throw new Error(`Unknown sandbox "${value}": use bwrap or runc`);
}

async function readTls(cert?: string, key?: string) {
  if (!cert && !key) return undefined;
  if (!cert || !key) throw new Error("Give both --tls-cert and --tls-key");
  return { cert: await Deno.readTextFile(cert), key: await Deno.readTextFile(key) };
}

function waitForSignal(): Promise<void> {
  return new Promise((resolve) => {
    for (const sig of ["SIGINT", "SIGTERM"] as const) Deno.addSignalListener(sig, () => resolve());
  });
}

async function server(args: string[]): Promise<number> {
  const v = flags("server", args, {
    http: { type: "string" },
    database: { type: "string" },
    "data-dir": { type: "string" },
    "join-token": { type: "string" },
    "max-slug-bytes": { type: "string" },
    "audit-key-file": { type: "string" },
  });
  const config: Record<string, unknown> = {};
  if (v["join-token"]) config.joinToken = v["join-token"];
  if (v["max-slug-bytes"]) config.maxSlugBytes = Number(v["max-slug-bytes"]);
  if (v["audit-key-file"]) config.auditKeyFile = v["audit-key-file"];
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
  await waitForSignal();
  await running.close();
  return 0;
}

async function agent(args: string[]): Promise<number> {
  const v = flags("agent", args, {
    server: { type: "string" },
    "join-token": { type: "string" },
    name: { type: "string" },
    attach: { type: "string" },
    advertise: { type: "string" },
    "data-dir": { type: "string" },
    sandbox: { type: "string" },
    "max-runs": { type: "string" },
    "tls-cert": { type: "string" },
    "tls-key": { type: "string" },
  });
  if (!v.server || !v["join-token"]) {
    throw new Error(`agent needs --server and --join-token\nUsage: ${USAGE.agent}`);
  }
  const maxRuns = Number(v["max-runs"] ?? 20);
  if (!Number.isInteger(maxRuns) || maxRuns < 1) {
    throw new Error("--max-runs must be a positive integer");
  }
  const tls = await readTls(v["tls-cert"], v["tls-key"]);
  const running = await startAgent({
    server: v.server,
    joinToken: v["join-token"],
    name: v.name ?? Deno.hostname().toLowerCase().replace(/[^a-z0-9-]/g, "-"),
    attach: parseAddr(v.attach ?? "0.0.0.0:5000"),
    ...(v.advertise ? { advertise: v.advertise } : {}),
    dataDir: v["data-dir"] ?? "./.oneoff-agent",
    sandbox: sandboxKind(v.sandbox),
    maxRuns,
    ...(tls ? { tls } : {}),
  });
  await waitForSignal();
  await running.close();
  return 0;
}

async function deployDemo(server: RunningServer, token: string): Promise<void> {
  const client = new Client(server.url, token);
  if (await server.ctx.store.appByName("demo")) return;
  await client.request("POST", "/apps", { name: "demo" });
  await client.request("PATCH", "/apps/demo/env", { set: { GREETING: "hello from oneoff" } });
  const dir = new URL("../examples/demo", import.meta.url).pathname;
  await client.request("POST", "/apps/demo/deploy", undefined, { body: packDirectory(dir) });
}

async function dev(args: string[]): Promise<number> {
  const v = flags("dev", args, {
    http: { type: "string" },
    attach: { type: "string" },
    "data-dir": { type: "string" },
    sandbox: { type: "string" },
  });
  const dataDir = v["data-dir"] ?? "./.oneoff";
  const log = createLogger("dev", { level: "warn" });
  const server = await startServer({
    http: v.http ?? "127.0.0.1:8080",
    dataDir,
    log: log.child("server"),
  });
  const token = (await Deno.readTextFile(`${dataDir}/admin.token`)).trim();
  const agent = await startAgent({
    server: server.url,
    joinToken: server.joinToken,
    name: "local",
    attach: parseAddr(v.attach ?? "127.0.0.1:5000"),
    dataDir: `${dataDir}/agent`,
    sandbox: sandboxKind(v.sandbox),
    maxRuns: 20,
    log: log.child("agent"),
  });
  await deployDemo(server, token);
  console.log([
    `oneoff dev is running (data in ${dataDir}; Ctrl-C stops it)`,
    `  server  ${server.url}`,
    `  agent   "local", attach port ${agent.attachPort}, ${sandboxKind(v.sandbox)} sandbox`,
    `  token   ${token}${server.newAdminToken ? " (new admin token)" : ""}`,
    ...agent.warnings.map((w) => `  warning ${w}`),
    "",
    "In another terminal:",
    `  export ONEOFF_SERVER=${server.url} ONEOFF_TOKEN=${token}`,
    `  alias oneoff="deno run -A ${new URL("../main.ts", import.meta.url).pathname}"`,
    "  oneoff run -a demo bash                 # a shell in a throwaway copy of the demo app",
    "  oneoff run -a demo -d -- 'for i in 1 2 3; do echo $i; sleep 1; done'",
    "  oneoff logs -a demo -f",
    "  oneoff ps -a demo",
    "  oneoff timeline -a demo",
    "",
  ].join("\n"));
  await waitForSignal();
  await agent.close();
  await server.close();
  return 0;
}

/** Runs `server`, `agent` or `dev`; resolves to the exit code. */
export async function runRole(role: "server" | "agent" | "dev", args: string[]): Promise<number> {
  try {
    if (role === "server") return await server(args);
    if (role === "agent") return await agent(args);
    return await dev(args);
  } catch (e) {
    console.error(`oneoff ${role}: ${errorMessage(e)}`);
    return e instanceof Error && e.message.includes("Usage:") ? 2 : 1;
  }
}
