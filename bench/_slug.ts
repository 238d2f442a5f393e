/**
 * `slug`: the first run of a newly deployed 100 MiB slug on an agent that
 * has never seen it (download, verify, extract, then the run), whole CLI,
 * against `tar xzf` of the same archive; the warm run beside it. The slug is
 * like a real one: a few large incompressible files (binaries, assets) and
 * thousands of small text files (code). The server and the agent are their
 * own processes, as an operator runs them.
 * @module
 */
import { DatabaseSync } from "node:sqlite";
import type { BenchContext } from "./_case.ts";
import { spawnAgent, spawnServer } from "./_procs.ts";
import { MAIN, MIB, row, spread, stats, time } from "./_util.ts";

async function sh(script: string, cwd: string): Promise<void> {
  const out = await new Deno.Command("sh", { args: ["-c", script], cwd, stderr: "piped" })
    .output();
  if (!out.success) throw new Error(`${script}: ${new TextDecoder().decode(out.stderr)}`);
}

/** Makes the tree once: `mibs` MiB, about two thirds in 4 random files, the rest small files. */
async function makeTree(dir: string, mibs: number): Promise<void> {
  const big = Math.round(mibs * 2 / 3 / 4);
  await sh(
    `mkdir -p tree/bin tree/lib && for i in 1 2 3 4; do head -c ${big}M /dev/urandom > tree/bin/blob$i; done && ` +
      `echo 'web: sleep 1' > tree/Procfile`,
    dir,
  );
  const small = Math.round((mibs - big * 4) * MIB / 4096);
  for (let i = 0; i < small; i++) {
    const sub = `${dir}/tree/lib/m${Math.floor(i / 100)}`;
    if (i % 100 === 0) await Deno.mkdir(sub);
    const lines = Array.from({ length: 200 }, (_, k) => `export const v${k} = ${i * k};`);
    await Deno.writeTextFile(`${sub}/f${i}.js`, lines.join("\n").slice(0, 4096));
  }
}

/** Prints the cold first run row. */
export async function benchColdSlug(ctx: BenchContext): Promise<void> {
  const mibs = ctx.pick(100, 8);
  const dir = await Deno.makeTempDir({ prefix: "oneoff-bench-slug-" });
  try {
    await makeTree(dir, mibs);
    await using server = await spawnServer();
    await using _agent = await spawnAgent(server);
    const env = server.cliEnv();
    const cli = (args: string[]) =>
      time(Deno.execPath(), ["run", "-A", "--quiet", MAIN, ...args], env);
    const cold: number[] = [], warm: number[] = [], tar: number[] = [];
    const n = ctx.pick(3, 1);
    for (let i = 0; i < n; i++) {
      // A new sha each round: a new file in the tree, so every agent cache misses.
      const app = `cold${i}`;
      await Deno.writeTextFile(`${dir}/tree/round.txt`, crypto.randomUUID());
      await sh("tar -C tree -czf slug.tar.gz .", dir);
      await server.api("POST", "/apps", { name: app });
      await cli(["deploy", "-a", app, `${dir}/slug.tar.gz`]);
      // Network "host": the row is about the slug, not a pasta per run.
      const db = new DatabaseSync(`${server.dir}/oneoff.db`);
      db.prepare("UPDATE apps SET network = 'host' WHERE name = ?").run(app);
      db.close();
      const run = ["run", "-a", app, "--no-tty", "--silent", "--", "true"];
      cold.push(await cli(run));
      warm.push(await cli(run));
      await Deno.mkdir(`${dir}/out`);
      tar.push(await time("tar", ["-C", `${dir}/out`, "-xzf", `${dir}/slug.tar.gz`]));
      await Deno.remove(`${dir}/out`, { recursive: true });
    }
    const ours = stats(cold), base = stats(tar), hot = stats(warm);
    row(
      `first run of a new ${mibs} MiB slug, whole CLI`,
      `${ours.median.toFixed(0)} ms`,
      `${base.median.toFixed(0)} ms`,
      `${(ours.median / base.median).toFixed(2)}x`,
      `≤ 1.50x tar xzf (baseline)  (warm run ${hot.median.toFixed(0)} ms)`,
      spread(ours),
    );
  } finally {
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
}
