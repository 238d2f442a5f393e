/**
 * A full disk under a real server's SQLite data dir (a small tmpfs): the
 * operations that need space say so (507), log batches are nacked and never
 * acknowledged, nothing stored is harmed, and all resumes once space is
 * freed.
 */
import { deepEqual, equal, match, ok } from "node:assert/strict";
import { startServer } from "../server/mod.ts";
import { makeSlug } from "../server/_testing.ts";
import { createLogger } from "../util/log.ts";
import { channelAgent, records } from "./_channel_agent.ts";
import { needs } from "./_tools.ts";

async function sh(...args: string[]): Promise<void> {
  const out = await new Deno.Command(args[0]!, { args: args.slice(1), stderr: "piped" }).output();
  if (!out.success) {
    throw new Error(`${args.join(" ")} failed: ${new TextDecoder().decode(out.stderr)}`);
  }
}

/** Writes a file until the disk is full; returns its path. */
async function fill(dir: string): Promise<string> {
  const path = `${dir}/filler`;
  using file = await Deno.open(path, { write: true, create: true });
  const chunk = new Uint8Array(16 * 1024).fill(7);
  try {
    while (true) await file.write(chunk);
  } catch (err) {
    if (!String(err).includes("No space left on device")) throw err;
  }
  // The last few bytes a short write leaves: take them too.
  try {
    while (true) await file.write(chunk.subarray(0, 512));
  } catch { /* full */ }
  return path;
}

Deno.test(needs(["root"], {
  name:
    "a full disk gets 507 on apps create and deploy, nacks log batches, harms nothing, and resumes",
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "oneoff-full-disk-" });
    await sh("mount", "-t", "tmpfs", "-o", "size=6m", "tmpfs", dir);
    try {
      const server = await startServer({
        http: "127.0.0.1:0",
        dataDir: `${dir}/data`,
        config: { joinToken: "join_test", autoApprove: true },
        log: createLogger("test", { level: "silent" }),
      });
      try {
        const token = server.newAdminToken!;
        const api = (method: string, path: string, body?: unknown) =>
          fetch(`${server.url}/api${path}`, {
            method,
            headers: { authorization: `Bearer ${token}` },
            ...(body === undefined
              ? {}
              : { body: body instanceof Uint8Array ? body as BodyInit : JSON.stringify(body) }),
          });
        const slug = await makeSlug({ "a.txt": "a", "Procfile": "web: true\n" });
        equal((await api("POST", "/apps", { name: "demo" })).status, 201);
        equal((await api("POST", "/apps/demo/deploy", slug)).status, 201);
        await using agent = await channelAgent(server.url, { joinToken: "join_test" });
        const created = await (await api("POST", "/apps/demo/runs", { command: "seq 9" })).json();
        const runId = created.run.id;
        await agent.next("start_run");
        agent.send({ type: "run_state", runId, state: "running", at: Date.now() });
        agent.send({ type: "logs", runId, batch: 0, records: records(0, 100) });
        await agent.next("logs_ack", { match: (m) => m.batch === 0 });

        const filler = await fill(dir);
        const apps = await api("POST", "/apps", { name: "second" });
        equal(apps.status, 507);
        const appsError = (await apps.json()).error;
        equal(appsError.code, "insufficient_storage");
        match(appsError.message, /^The server's disk is full: /);
        const deploy = await api("POST", "/apps/demo/deploy", await makeSlug({ "b.txt": "b" }));
        equal(deploy.status, 507);
        equal((await deploy.json()).error.code, "insufficient_storage");

        const from = agent.received.length;
        const big = records(100, 3000, 200);
        agent.send({ type: "logs", runId, batch: 1, records: big });
        const nack = await agent.next("logs_nack", { from });
        equal(nack.batch, 1);
        match(nack.reason, /disk is full|No space left/);
        ok(!agent.received.some((m) => m.type === "logs_ack" && m.batch === 1), "never acked");

        // Nothing already stored is harmed.
        const listed = await (await api("GET", "/apps")).json();
        deepEqual(listed.apps.map((a: { name: string }) => a.name), ["demo"]);
        const app = await (await api("GET", "/apps/demo")).json();
        equal(app.app.release, 1);
        const before = await (await api("GET", "/apps/demo/logs?n=5000")).json();
        equal(before.lines.length, 100);

        // Space comes back: the agent's resend is stored, once, and acknowledged.
        await Deno.remove(filler);
        const again = agent.received.length;
        agent.send({ type: "logs", runId, batch: 1, records: big });
        await agent.next("logs_ack", { from: again, match: (m) => m.batch === 1 });
        const after = await (await api("GET", "/apps/demo/logs?n=5000")).json();
        equal(after.lines.length, 3100);
        equal(new Set(after.lines.map((l: { line: string }) => l.line)).size, 3100);
        equal((await api("POST", "/apps", { name: "second" })).status, 201);
        equal(
          (await api("POST", "/apps/demo/deploy", await makeSlug({ "b.txt": "b" }))).status,
          201,
        );
      } finally {
        await server.close();
      }
    } finally {
      await sh("umount", dir);
      await Deno.remove(dir, { recursive: true });
    }
  },
}));
