/**
 * Attach sessions under faults and hostile input the issues do not spell
 * out: an agent killed mid-session, garbage on a framed connection, a relay
 * peer that breaks the credit rules. Each case ends with one clear line, in
 * bounded time, and nothing else is disturbed.
 * @module
 */
import { equal, match, ok } from "node:assert/strict";
import { startServer } from "../server/mod.ts";
import { createLogger } from "../util/log.ts";
import { cli, Proc, waitOnline } from "./_processes.ts";
import { waitFor } from "./_wait.ts";

const MAIN = new URL("../main.ts", import.meta.url).pathname;

/** A server in this process (its agent grace short) and an agent process that the test kills. */
async function killableAgent(dir: string) {
  const server = await startServer({
    http: "127.0.0.1:0",
    dataDir: `${dir}/server`,
    log: createLogger("test", { level: "silent" }),
    config: { autoApprove: true, agentGraceMs: 1_000 },
  });
  const agent = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      "--quiet",
      MAIN,
      "agent",
      "--server",
      server.url,
      "--join-token",
      server.joinToken,
      "--name",
      "vm-1",
      "--attach",
      "127.0.0.1:0",
      "--data-dir",
      `${dir}/agent`,
    ],
    stdout: "null",
    stderr: "null",
  }).spawn();
  const env = { ONEOFF_SERVER: server.url, ONEOFF_TOKEN: server.newAdminToken!, HOME: dir };
  await waitOnline(env, ["vm-1"]);
  equal((await cli(env, ["apps", "create", "demo"])).code, 0);
  const demo = new URL("../examples/demo", import.meta.url).pathname;
  equal((await cli(env, ["deploy", "-a", "demo", demo])).code, 0);
  return { server, agent, env };
}

for (const via of ["direct", "server"]) {
  Deno.test(`the agent killed mid framed session (--via ${via}): the CLI stops reconnecting once the run is lost`, async () => {
    const dir = await Deno.makeTempDir({ prefix: "oneoff-hostile-" });
    const { server, agent, env } = await killableAgent(dir);
    try {
      // The reattach grace (2 min by default) would have kept the CLI reconnecting for all of it.
      const args = ["run", "-a", "demo", "--no-tty", "--via", via, "--", "echo started; sleep 300"];
      await using run = new Proc(args, { env });
      await waitFor(() => run.stdout.includes("started"), {
        message: "the session to run",
        seen: () => run.stderr,
      });
      agent.kill("SIGKILL");
      await agent.status;
      const started = Date.now();
      const status = await run.status();
      const took = Date.now() - started;
      ok(took < 20_000, `the CLI took ${took} ms to end`);
      equal(status.code, 1, run.stderr);
      match(run.stderr, /reconnecting…\n(.*\n)?oneoff: one-off-1 lost: Its agent went away\n$/);
    } finally {
      try {
        agent.kill("SIGKILL");
      } catch { /* ended */ }
      await agent.status;
      await server.close();
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    }
  });
}
