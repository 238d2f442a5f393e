/**
 * The benchmarks that use a server and an agent inside this process
 * (tests/_system.ts): CLI start-up, request to exec, stream throughput and
 * detached log lines.
 * @module
 */
import type { TestSystem } from "../tests/_system.ts";
import { BARE_BWRAP_TRUE } from "../agent/check.ts";
import type { BenchContext } from "./_case.ts";
import { MAIN, rounds, row, spread, time } from "./_util.ts";

const RUN_TRUE = [
  "run",
  "-A",
  "--quiet",
  MAIN,
  "run",
  "-a",
  "demo",
  "--no-tty",
  "--silent",
  "--",
  "true",
];

/** `run`: the whole CLI running `true` against bare deno + bare bwrap. */
export async function benchRunTrue(ctx: BenchContext): Promise<void> {
  const sys = await ctx.system();
  const script = await Deno.makeTempFile({ suffix: ".ts" });
  await Deno.writeTextFile(script, "console.log('');\n");
  const env = sys.cliEnv();
  // The first run also fills the slug cache and the module cache: a warm-up each.
  const n = ctx.pick(11, 3);
  const deno = await rounds(n, () => time(Deno.execPath(), ["run", "-A", "--quiet", script]));
  const bwrap = await rounds(n, () => time("bwrap", [...BARE_BWRAP_TRUE]));
  const ours = await rounds(n, () => time(Deno.execPath(), RUN_TRUE, env));
  await Deno.remove(script);
  const base = deno.median + bwrap.median;
  row(
    "oneoff run --no-tty -- true (whole CLI)",
    `${ours.median.toFixed(1)} ms`,
    `${base.toFixed(1)} ms`,
    `${(ours.median / base).toFixed(2)}x`,
    `≤ 1.50x  (deno ${deno.median.toFixed(1)} ms + bwrap ${bwrap.median.toFixed(1)} ms)`,
    spread(ours),
  );
}

/** `exec`: from the API request to the process's exec on the agent. */
export async function benchRequestToExec(ctx: BenchContext): Promise<void> {
  const sys = await ctx.system();
  const once = async () => {
    const sent = Date.now() * 1e6;
    const res = await sys.api<{ run: { label: string } }>("POST", "/apps/demo/runs", {
      command: "date +%s%N",
    });
    const label = res.run.label;
    await sys.api("GET", `/apps/demo/runs/${label}?wait=30`);
    const logs = await sys.api<{ lines: { line: string }[] }>(
      "GET",
      `/apps/demo/logs?filter=${label}`,
    );
    return (Number(logs.lines[0]?.line) - sent) / 1e6;
  };
  const bwrap = await rounds(ctx.pick(11, 3), () => time("bwrap", [...BARE_BWRAP_TRUE]));
  const s = await rounds(ctx.pick(21, 3), once);
  row(
    "server request → process exec (warm slug)",
    `${s.median.toFixed(1)} ms`,
    `${bwrap.median.toFixed(1)} ms`,
    `${(s.median / bwrap.median).toFixed(2)}x`,
    "≤ 2x bare `bwrap true` (baseline)",
    spread(s),
  );
}

async function ncThroughput(bytes: number): Promise<number> {
  const port = 20000 + Math.floor(Math.random() * 20000);
  const server = new Deno.Command("sh", { args: ["-c", `nc -l 127.0.0.1 ${port} > /dev/null`] })
    .spawn();
  await new Promise((r) => setTimeout(r, 200));
  const start = performance.now();
  await new Deno.Command("sh", {
    args: ["-c", `head -c ${bytes} /dev/zero | nc -N 127.0.0.1 ${port}`],
  }).output();
  await server.status;
  return bytes / ((performance.now() - start) / 1000);
}

async function oursThroughput(
  sys: TestSystem,
  bytes: number,
  direction: "in" | "out",
): Promise<number> {
  const cmd = direction === "out"
    ? `${Deno.execPath()} run -A --quiet ${MAIN} run -a demo --no-tty --silent -- 'head -c ${bytes} /dev/zero' > /dev/null`
    : `head -c ${bytes} /dev/zero | ${Deno.execPath()} run -A --quiet ${MAIN} run -a demo --no-tty --silent -- 'cat > /dev/null'`;
  const start = performance.now();
  const out = await new Deno.Command("sh", { args: ["-c", cmd], env: sys.cliEnv() }).output();
  if (!out.success) throw new Error(new TextDecoder().decode(out.stderr));
  return bytes / ((performance.now() - start) / 1000);
}

/**
 * `stream`: bytes each way through port 5000 with the whole CLI, against
 * nc → nc, without and with the audit recording (two systems, same run).
 */
export async function benchThroughput(ctx: BenchContext): Promise<void> {
  const recorded = await ctx.system();
  const plain = await ctx.plainSystem();
  // 512 MiB, not 1 GiB: shorter rounds, so that the whole bench stays under 10 minutes.
  const bytes = ctx.pick(512, 32) * 1024 * 1024;
  const n = ctx.pick(3, 1);
  const nc = await rounds(n, () => ncThroughput(bytes), 0);
  for (const dir of ["out", "in"] as const) {
    const way = dir === "out" ? "process → client" : "client → process";
    const ours = await rounds(n, () => oursThroughput(plain, bytes, dir), 0);
    row(
      `no-TTY stream, port 5000 (${way})`,
      `${(ours.median / 2 ** 20).toFixed(0)} MiB/s`,
      `${(nc.median / 2 ** 20).toFixed(0)} MiB/s`,
      `${((ours.median / nc.median) * 100).toFixed(0)}%`,
      `≥ 90% of nc → nc (${bytes / 2 ** 20} MiB, whole CLI, recording off)`,
      spread(ours),
    );
    // A quarter of the bytes: recording every byte is far slower.
    const withAudit = await oursThroughput(recorded, bytes / 4, dir);
    row(
      `  same, recorded for the audit`,
      `${(withAudit / 2 ** 20).toFixed(0)} MiB/s`,
      `${(ours.median / 2 ** 20).toFixed(0)} MiB/s`,
      `${((withAudit / ours.median) * 100).toFixed(0)}%`,
      `≥ 80% of not recorded (${bytes / 4 / 2 ** 20} MiB)`,
    );
  }
}

/** `lines`: a detached run printing 1,000,000 lines, every one stored in order. */
export async function benchDetachedLines(
  sys: TestSystem,
  label: string,
  quick = false,
): Promise<void> {
  const total = quick ? 50_000 : 1_000_000;
  const start = performance.now();
  const res = await sys.api<{ run: { label: string } }>("POST", "/apps/demo/runs", {
    command: `seq 1 ${total}`,
  });
  const run = res.run.label;
  await sys.api("GET", `/apps/demo/runs/${run}?wait=60`);
  let state = "";
  while (state !== "exited") {
    state = (await sys.api<{ run: { state: string } }>("GET", `/apps/demo/runs/${run}?wait=60`)).run
      .state;
  }
  // The run's end is reported once its last lines are on the agent's disk;
  // they reach the store a moment later: the clock stops when all are stored.
  const { store } = sys.server.ctx;
  const app = (await store.appByName("demo"))!;
  const created = await store.runByNumber(app.id, Number(run.split("-").at(-1)));
  // Watched on the run's usage row (one key) until its last line is in,
  // then counted: reading a million rows, or counting them every 100 ms, in
  // this process would slow the ingest it measures. They are checked afterwards.
  const deadline = performance.now() + 300_000;
  const pause = () => new Promise((resolve) => setTimeout(resolve, 20));
  while ((await store.runLogUsage(created!.id)).seq < total - 1 && performance.now() < deadline) {
    await pause();
  }
  while (await store.countRunLogs(created!.id) < total && performance.now() < deadline) {
    await pause();
  }
  const elapsed = (performance.now() - start) / 1000;
  let count = 0, ordered = true, after = 0, expected = 1;
  const seen = new Set<string>();
  for (;;) {
    const page = await store.readLogs(app.id, { after_id: after, source: run, limit: 10000 });
    if (page.length === 0) break;
    for (const line of page) {
      if (line.line !== String(expected)) ordered = false;
      seen.add(line.line);
      expected++;
      count++;
    }
    after = page.at(-1)!.id;
  }
  const once = count === total && seen.size === total;
  row(
    `detached run, ${total.toLocaleString("en")} lines (${label})`,
    `${Math.round(total / elapsed).toLocaleString("en")} l/s`,
    "-",
    "-",
    `≥ 300,000 lines/s; stored ${count.toLocaleString("en")} ${
      once
        ? (ordered ? "= every line once, in order" : "= every line once, NOT in id order")
        : "MISMATCH"
    }`,
  );
}
