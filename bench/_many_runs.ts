/**
 * `runs`: 1,000 detached `true` runs submitted at once to a server (its own
 * process) with 4 agents (each its own process): how fast the server
 * accepts them, how long until every one has ended, and that none is lost
 * (every run exited 0, exactly 1,000 of them).
 * @module
 */
import { DatabaseSync } from "node:sqlite";
import type { BenchContext } from "./_case.ts";
import { type RoleProcess, spawnAgent, spawnServer } from "./_procs.ts";
import { deployDemo } from "./_sessions.ts";
import { row, sleep } from "./_util.ts";

const APP = "many";
const AGENTS = 4;

/** Prints the accepted rate and the time until all ended. */
export async function benchManyRuns(ctx: BenchContext): Promise<void> {
  const total = ctx.pick(1000, 100);
  await using server = await spawnServer(["--max-runs-per-app", String(total * 2)]);
  const agents: RoleProcess[] = [];
  try {
    for (let i = 0; i < AGENTS; i++) agents.push(await spawnAgent(server, { maxRuns: 20 }));
    await deployDemo(server, APP);
    // Network "host": the row is about placement and the queue, not a pasta per run.
    const db = new DatabaseSync(`${server.dir}/oneoff.db`);
    db.prepare("UPDATE apps SET network = 'host' WHERE name = ?").run(APP);
    db.close();
    // One warm-up run per agent's worth, so that every agent has the slug.
    await Promise.all(
      Array.from({ length: AGENTS * 2 }, async () => {
        const { run } = await server.api<{ run: { label: string } }>(
          "POST",
          `/apps/${APP}/runs`,
          { command: "true" },
        );
        await server.api("GET", `/apps/${APP}/runs/${run.label}?wait=60`);
      }),
    );
    const start = performance.now();
    const labels = await Promise.all(
      Array.from(
        { length: total },
        async () =>
          (await server.api<{ run: { label: string } }>("POST", `/apps/${APP}/runs`, {
            command: "true",
          })).run.label,
      ),
    );
    const accepted = (performance.now() - start) / 1000;
    const mine = new Set(labels);
    type Runs = { runs: { label: string; state: string; exit_code: number | null }[] };
    let ended = 0, ok = 0;
    const deadline = performance.now() + 300_000;
    while (performance.now() < deadline) {
      const { runs } = await server.api<Runs>("GET", `/apps/${APP}/runs?limit=10000`);
      const ours = runs.filter((r) => mine.has(r.label));
      ended = ours.filter((r) => !["pending", "starting", "running"].includes(r.state)).length;
      ok = ours.filter((r) => r.state === "exited" && r.exit_code === 0).length;
      if (ended === total) break;
      await sleep(100);
    }
    const done = (performance.now() - start) / 1000;
    const lost = total - ok;
    row(
      `${total.toLocaleString("en")} detached true runs over ${AGENTS} agents`,
      `${Math.round(total / accepted)} runs/s`,
      "-",
      "-",
      `≥ 300 runs/s accepted  (all ended in ${done.toFixed(1)} s = ${
        Math.round(total / done)
      } runs/s; ${
        new Set(labels).size === total && lost === 0 ? "none lost" : `${lost} NOT exited 0`
      })`,
    );
  } finally {
    for (const agent of agents) await agent.stop();
  }
}
