/**
 * `idle`: resident memory of an idle server and an idle agent, each its own
 * process, next to a bare Deno process that only waits.
 * @module
 */
import { spawnAgent, spawnBareDeno, spawnServer } from "./_procs.ts";
import type { BenchContext } from "./_case.ts";
import { mib, row, rssOf, sleep } from "./_util.ts";

/** How long the processes sit idle before their memory is read. */
const IDLE_MS = 3_000;

/** Prints the idle server and idle agent rows. */
export async function benchIdle(ctx: BenchContext): Promise<void> {
  await using bare = await spawnBareDeno();
  await using server = await spawnServer();
  await using agent = await spawnAgent(server);
  await sleep(ctx.pick(IDLE_MS, 1_000));
  const base = await rssOf(bare.pid);
  const figures = [
    { name: "idle server RSS (own process)", rss: await rssOf(server.pid), limit: 80 },
    { name: "idle agent RSS (own process)", rss: await rssOf(agent.pid), limit: 60 },
  ];
  for (const { name, rss, limit } of figures) {
    row(
      name,
      mib(rss),
      mib(base),
      `${(rss / base).toFixed(2)}x`,
      `≤ ${limit} MiB  (baseline: bare deno run of a waiting script)`,
    );
  }
}
