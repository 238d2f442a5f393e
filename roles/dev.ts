/**
 * `oneoff dev`: server and agent in one process on SQLite, with a demo app.
 * @module
 */
import { startAgent } from "../agent/mod.ts";
import type { CreateAppBody, EnvChangeBody } from "../protocol/mod.ts";
import { Client } from "../cli/client.ts";
import { packDirectory } from "../cli/pack.ts";
import { type RunningServer, startServer } from "../server/mod.ts";
import { parseAddr } from "../util/addr.ts";
import { createLogger } from "../util/log.ts";
import { flags, sandboxKind } from "./_flags.ts";
import { signalCounter } from "./agent.ts";

async function deployDemo(server: RunningServer, token: string): Promise<void> {
  const client = new Client(server.url, token);
  if (await server.ctx.store.appByName("demo")) return;
  await client.request("POST", "/apps", { name: "demo" } satisfies CreateAppBody);
  const env: EnvChangeBody = { set: { GREETING: "hello from oneoff" } };
  await client.request("PATCH", "/apps/demo/env", env);
  const dir = new URL("../examples/demo", import.meta.url).pathname;
  await client.request("POST", "/apps/demo/deploy", undefined, { body: packDirectory(dir) });
}

/** Runs server + agent until SIGINT/SIGTERM. */
export async function dev(args: string[]): Promise<number> {
  const v = flags("dev", args);
  const dataDir = v["data-dir"] ?? "./.oneoff";
  const log = createLogger("dev", { level: "warn" });
  const server = await startServer({
    http: v.http ?? "127.0.0.1:8080",
    dataDir,
    // One machine, one agent of its own: approving it by hand would add nothing.
    config: { autoApprove: true },
    log: log.child("server"),
  });
  // Shown by its path, never its value: terminals and logs keep what is printed.
  const tokenFile = `${server.ctx.config.dataDir}/admin.token`;
  const token = (await Deno.readTextFile(tokenFile)).trim();
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
    `oneoff dev is running (data in ${dataDir}; Ctrl-C stops it, twice without waiting for runs)`,
    `  server  ${server.url}`,
    `  agent   "local", attach port ${agent.attachPort}, ${sandboxKind(v.sandbox)} sandbox`,
    `  token   in ${tokenFile}${server.newAdminToken ? " (a new admin token)" : ""}`,
    ...agent.warnings.map((w) => `  warning ${w}`),
    "",
    "In another terminal:",
    `  export ONEOFF_SERVER=${server.url} ONEOFF_TOKEN=$(cat ${tokenFile})`,
    `  alias oneoff="deno run -A ${new URL("../main.ts", import.meta.url).pathname}"`,
    `  #  or install it for every day: deno install -g -A -n oneoff --config ${
      new URL("../deno.json", import.meta.url).pathname
    } ${new URL("../main.ts", import.meta.url).pathname}`,
    "  oneoff run -a demo bash                 # a shell in a throwaway copy of the demo app",
    "  oneoff run -a demo -d -- 'for i in 1 2 3; do echo $i; sleep 1; done'",
    "  oneoff logs -a demo -f",
    "  oneoff ps -a demo",
    "  oneoff timeline -a demo",
    "",
  ].join("\n"));
  const signals = signalCounter();
  try {
    await Promise.race([signals.first, agent.refused]);
    // Runs may finish (a second Ctrl-C stops them at once); the server stays up meanwhile.
    await Promise.race([agent.drain(), signals.second]);
  } finally {
    signals.remove();
    await agent.close();
    await server.close();
  }
  return 0;
}
