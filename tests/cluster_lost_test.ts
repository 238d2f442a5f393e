/**
 * Lost agents with several servers on one PostgreSQL: an agent that left
 * one server for another is not taken for lost by the first (its grace
 * runs out while the other holds it), and one that is gone from every
 * server is. Two servers in this process, one data dir (the same keys).
 * @module
 */
import { equal } from "node:assert/strict";
import postgres from "postgres";
import { startServer } from "../server/mod.ts";
import { makeSlug } from "../server/_testing.ts";
import { createLogger } from "../util/log.ts";
import { channelAgent } from "./_channel_agent.ts";
import { needs, PG_URL } from "./_tools.ts";
import { waitFor } from "./_wait.ts";

const GRACE_MS = 400;

Deno.test(needs(["postgres"], {
  name: "an agent that moved to another server keeps its runs; one gone from all loses them",
  async fn() {
    const schema = `cluster_lost_${crypto.randomUUID().replaceAll("-", "").slice(0, 10)}`;
    const admin = postgres(PG_URL!, { max: 1, onnotice: () => {} });
    await admin`create schema ${admin(schema)}`;
    const url = new URL(PG_URL!);
    url.searchParams.set("search_path", schema);
    const dataDir = await Deno.makeTempDir({ prefix: "oneoff-cluster-lost-" });
    const options = {
      http: "127.0.0.1:0",
      dataDir,
      database: url.href,
      config: {
        joinToken: "join_test",
        autoApprove: true,
        agentGraceMs: GRACE_MS,
        heartbeatMs: 200,
      },
      log: createLogger("test", { level: "silent" }),
    };
    const a = await startServer(options);
    const b = await startServer(options);
    try {
      const token = a.newAdminToken!;
      const api = (server: typeof a, method: string, path: string, body?: unknown) =>
        fetch(`${server.url}/api${path}`, {
          method,
          headers: { authorization: `Bearer ${token}` },
          ...(body === undefined
            ? {}
            : { body: body instanceof Uint8Array ? body as BodyInit : JSON.stringify(body) }),
        }).then(async (res) => ({ status: res.status, body: await res.json() }));
      equal((await api(a, "POST", "/apps", { name: "demo" })).status, 201);
      equal((await api(a, "POST", "/apps/demo/deploy", await makeSlug({ "a": "a" }))).status, 201);
      const first = await channelAgent(a.url, { joinToken: "join_test", name: "vm" });
      const { credential } = await first.next("enrolled");
      // Created through b, placed by a (which holds the agent).
      const created = await api(b, "POST", "/apps/demo/runs", { command: "sleep 60" });
      const runId = created.body.run.id as string;
      await first.next("start_run");
      first.send({ type: "run_state", runId, state: "running", at: Date.now() });
      const state = async () => (await api(b, "GET", `/apps/demo/runs/${runId}`)).body.run.state;
      await waitFor(async () => await state() === "running", { message: "the run to run" });

      await first[Symbol.asyncDispose]();
      const second = await channelAgent(b.url, { credential, name: "vm", running: [runId] });
      // A live agent beats: silence for three heartbeats would drop it.
      const beats = setInterval(() => second.send({ type: "heartbeat", running: [runId] }), 100);
      // Nothing to wait for: a's grace must run out, several times over, with nothing lost.
      await new Promise((resolve) => setTimeout(resolve, GRACE_MS * 4));
      const now = (await api(b, "GET", `/apps/demo/runs/${runId}`)).body.run;
      equal(
        now.state,
        "running",
        `not lost while another server holds its agent: ${JSON.stringify(now)}`,
      );
      // Within a heartbeat, whichever of a and b wrote last.
      await waitFor(async () => {
        const agents = (await api(a, "GET", "/agents")).body.agents as { state: string }[];
        return agents[0]?.state === "online";
      }, { message: "online as a sees it, though b holds it", timeoutMs: 5000 });

      clearInterval(beats);
      await second[Symbol.asyncDispose]();
      await waitFor(async () => await state() === "lost", {
        // b's grace, or (when a stale hold outlived it) the leader's next look, every 5 s.
        message: "the run to be lost once no server holds its agent",
        timeoutMs: 15_000,
      });
    } finally {
      await b.close();
      await a.close();
      await admin`drop schema ${admin(schema)} cascade`;
      await admin.end();
      await Deno.remove(dataDir, { recursive: true });
    }
  },
}));
