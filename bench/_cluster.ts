/**
 * `cluster`: runs accepted per second (`POST /apps/APP/runs`, 16 clients at
 * once) through haproxy in front of one server, and in front of three on
 * the same PostgreSQL: what a second and third server add when the
 * database is the one place they share. No agent: the runs queue, so the
 * figure is the API and the store, not the sandboxes.
 * @module
 */
import type { BenchContext } from "./_case.ts";
import { startCluster } from "../tests/_cluster.ts";
import { REQUIREMENTS } from "../tests/_tools.ts";
import { row } from "./_util.ts";

const CLIENTS = 16;

async function accepted(pg: string, servers: number, total: number): Promise<number> {
  await using c = await startCluster(pg, servers);
  const api = (method: string, path: string, body: BodyInit) =>
    fetch(`${c.url}/api${path}`, {
      method,
      headers: { authorization: `Bearer ${c.token}` },
      body,
    });
  await (await api("POST", "/apps", JSON.stringify({ name: "bench" }))).body?.cancel();
  const slug = await (await import("../server/_testing.ts")).makeSlug({ "a.txt": "a" });
  await (await api("POST", "/apps/bench/deploy", slug as BodyInit)).body?.cancel();
  let next = 0;
  const start = performance.now();
  await Promise.all(Array.from({ length: CLIENTS }, async () => {
    while (next++ < total) {
      const res = await api("POST", "/apps/bench/runs", JSON.stringify({ command: "true" }));
      await res.body?.cancel();
      if (res.status !== 201) throw new Error(`Run creation answered ${res.status}`);
    }
  }));
  return total / ((performance.now() - start) / 1000);
}

/** Runs/s accepted with one server vs three behind haproxy, on PostgreSQL. */
export async function benchCluster(ctx: BenchContext): Promise<void> {
  if (!ctx.postgres || REQUIREMENTS.haproxy.path === undefined) {
    console.log("(cluster skipped: needs --postgres URL (or ONEOFF_TEST_POSTGRES) and haproxy)");
    return;
  }
  const total = ctx.pick(2000, 200);
  const one = await accepted(ctx.postgres, 1, total);
  const three = await accepted(ctx.postgres, 3, total);
  const fmt = (n: number) => `${Math.round(n).toLocaleString("en")} runs/s`;
  row(
    `runs accepted, 1 server behind haproxy`,
    fmt(one),
    "-",
    "-",
    `${total} runs, ${CLIENTS} clients`,
  );
  row(
    `runs accepted, 3 servers behind haproxy`,
    fmt(three),
    fmt(one),
    `${(three / one).toFixed(2)}×`,
    "≥ 1 server's (more on more cores)",
  );
}
