/**
 * PostgreSQL restarted under a real server mid-ingest, on a private cluster
 * this test starts (never the shared one): batches sent during the outage
 * are nacked and none acknowledged, and once the database is back every
 * line is stored once.
 */
import { equal, match, ok } from "node:assert/strict";
import { startServer } from "../server/mod.ts";
import { makeSlug } from "../server/_testing.ts";
import { createLogger } from "../util/log.ts";
import { channelAgent, records } from "./_channel_agent.ts";
import { needs, tool } from "./_tools.ts";
import { waitFor } from "./_wait.ts";

const AS_POSTGRES = Deno.uid() === 0 ? ["runuser", "-u", "postgres", "--"] : [];

async function run(args: string[]): Promise<void> {
  const [cmd, ...rest] = [...AS_POSTGRES, ...args];
  const out = await new Deno.Command(cmd!, { args: rest, stdout: "piped", stderr: "piped" })
    .output();
  if (!out.success) {
    const text = new TextDecoder().decode(out.stderr) || new TextDecoder().decode(out.stdout);
    throw new Error(`${args.join(" ")} failed: ${text}`);
  }
}

function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  listener.close();
  return port;
}

/** A PostgreSQL cluster of this test's own, on a free port; disposing removes it. */
async function privateCluster() {
  const bin = tool("pg_server");
  const dir = await Deno.makeTempDir({ prefix: "oneoff-pg-" });
  await Deno.chmod(dir, 0o755);
  if (Deno.uid() === 0) {
    const ids = await new Deno.Command("id", { args: ["-u", "postgres"] }).output();
    const gid = await new Deno.Command("id", { args: ["-g", "postgres"] }).output();
    const decode = (b: Uint8Array) => Number(new TextDecoder().decode(b).trim());
    await Deno.chown(dir, decode(ids.stdout), decode(gid.stdout));
  }
  const data = `${dir}/data`;
  const port = freePort();
  await run([`${bin}/initdb`, "-D", data, "-U", "postgres", "--auth=trust", "-E", "UTF8"]);
  const pgCtl = (...args: string[]) => run([`${bin}/pg_ctl`, "-D", data, "-w", ...args]);
  const start = () =>
    pgCtl(
      "-l",
      `${dir}/log`,
      "-o",
      `-p ${port} -k ${dir} -c listen_addresses=127.0.0.1 -c fsync=off`,
      "start",
    );
  await start();
  return {
    url: `postgres://postgres@127.0.0.1:${port}/postgres`,
    start,
    stop: () => pgCtl("-m", "fast", "stop"),
    async [Symbol.asyncDispose]() {
      await pgCtl("-m", "immediate", "stop").catch(() => {});
      await Deno.remove(dir, { recursive: true });
    },
  };
}

Deno.test(needs(["pg_server"], {
  name: "log batches sent while PostgreSQL restarts are nacked, never acked, and stored once after",
  async fn() {
    await using pg = await privateCluster();
    const dataDir = await Deno.makeTempDir({ prefix: "oneoff-pg-server-" });
    const server = await startServer({
      http: "127.0.0.1:0",
      dataDir,
      database: pg.url,
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
      equal((await api("POST", "/apps", { name: "demo" })).status, 201);
      equal((await api("POST", "/apps/demo/deploy", await makeSlug({ "a.txt": "a" }))).status, 201);
      await using agent = await channelAgent(server.url, { joinToken: "join_test" });
      const created = await (await api("POST", "/apps/demo/runs", { command: "seq 1" })).json();
      const runId = created.run.id;
      await agent.next("start_run");
      agent.send({ type: "run_state", runId, state: "running", at: Date.now() });

      const PER = 1000;
      const batch = (n: number) => ({
        type: "logs" as const,
        runId,
        batch: n,
        records: records(n * PER, PER),
      });
      for (let n = 0; n < 3; n++) agent.send(batch(n));
      await agent.next("logs_ack", { match: (m) => m.batch === 2 });

      await pg.stop();
      const outage = agent.received.length;
      for (let n = 3; n < 6; n++) agent.send(batch(n));
      for (let n = 3; n < 6; n++) {
        const nack = await agent.next("logs_nack", { from: outage, match: (m) => m.batch === n });
        match(nack.reason, /^The server could not store the batch: /);
      }
      ok(
        !agent.received.slice(outage).some((m) => m.type === "logs_ack"),
        "nothing acknowledged while the database is down",
      );
      const down = await api("POST", "/apps", { name: "second" });
      equal(down.status, 503, "the API says the database is away, not an internal error");
      equal((await down.json()).error.code, "store_unavailable");

      await pg.start();
      // The agent sends each nacked batch again later, until it is acknowledged
      // (the pool's first queries after the restart may still fail).
      for (let n = 3; n < 6; n++) {
        await waitFor(async () => {
          const from = agent.received.length;
          agent.send(batch(n));
          const answer = await waitFor(
            () =>
              agent.received.slice(from).find((m) =>
                (m.type === "logs_ack" || m.type === "logs_nack") && m.batch === n
              ),
            { message: `an answer to batch ${n}` },
          );
          if (answer.type === "logs_nack") await new Promise((r) => setTimeout(r, 200));
          return answer.type === "logs_ack";
        }, { message: `batch ${n} to be acknowledged after the restart`, timeoutMs: 60_000 });
      }
      const read = await (await api("GET", "/apps/demo/logs?n=10000")).json();
      equal(read.lines.length, 6 * PER, "every line once");
      equal(new Set(read.lines.map((l: { line: string }) => l.line)).size, 6 * PER);
    } finally {
      await server.close();
      await Deno.remove(dataDir, { recursive: true });
    }
  },
}));
