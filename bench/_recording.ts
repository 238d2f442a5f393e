/**
 * `recording`: the no-TTY stream from the process to the client with the
 * audit recording on and off, same run, and how long the recording takes
 * to be stored whole after the session ended (the session never waits for
 * it: the agent spools what the server has not stored yet).
 * @module
 */
import type { TestSystem } from "../tests/_system.ts";
import { spawnAgent, spawnServer } from "./_procs.ts";
import { MAIN, median, MIB, row } from "./_util.ts";

/** What a session needs of a system: where the CLI goes, and where the agent spools. */
interface Target {
  cliEnv(): Record<string, string>;
  /** The agent's audit spool folder. */
  spool: string;
}

async function session(sys: Target, bytes: number): Promise<number> {
  const cmd = `${Deno.execPath()} run -A --quiet ${MAIN} run -a demo --no-tty --silent -- ` +
    `'head -c ${bytes} /dev/urandom | base64 -w 76' > /dev/null`;
  const start = performance.now();
  const out = await new Deno.Command("sh", { args: ["-c", cmd], env: sys.cliEnv() }).output();
  if (!out.success) throw new Error(new TextDecoder().decode(out.stderr));
  return performance.now() - start;
}

// Milliseconds until every chunk of the agent's spool is stored (acknowledged, then deleted).
async function stored(sys: Target, since: number): Promise<number> {
  const { spool } = sys;
  const deadline = performance.now() + 300_000;
  while (performance.now() < deadline) {
    if ([...Deno.readDirSync(spool)].length === 0) return performance.now() - since;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  return NaN;
}

/** Times `n` recorded sessions: the session's end, and the recording's being stored whole. */
async function recordedRuns(sys: Target, bytes: number, n = 2): Promise<[number, number]> {
  const runs: number[] = [];
  const storedMs: number[] = [];
  for (let i = 0; i < n; i++) {
    const start = performance.now();
    runs.push(await session(sys, bytes));
    storedMs.push(await stored(sys, start));
  }
  return [median(runs), median(storedMs)];
}

/**
 * Recorded vs unrecorded stream of `mib` MiB of base64 text (compressible,
 * like a dump): with the server and agent in this process (one JavaScript
 * thread for both, as the other stream rows), and as two processes of their
 * own, as an operator runs them.
 */
export async function benchRecording(
  recorded: TestSystem,
  plain: TestSystem,
  mib = 256,
): Promise<void> {
  // Base64 of random bytes: 4/3 of the bytes asked for come out.
  const bytes = Math.round(mib * MIB * 3 / 4);
  const out = bytes * 4 / 3;
  const rate = (ms: number) => `${(out / MIB / (ms / 1000)).toFixed(0)} MiB/s`;
  const ratio = (ms: number, base: number) => `${((base / ms) * 100).toFixed(0)}%`;
  const plainMs = median([
    await session(plainTarget(plain), bytes),
    await session(plainTarget(plain), bytes),
  ]);
  const [inMs, inStored] = await recordedRuns(plainTarget(recorded), bytes);
  row(
    `no-TTY text stream, recorded (${mib} MiB)`,
    rate(inMs),
    rate(plainMs),
    ratio(inMs, plainMs),
    "≥ 80% of the same stream not recorded",
  );
  row(
    "  recording stored whole, from the start",
    rate(inStored),
    rate(plainMs),
    ratio(inStored, plainMs),
    "the session does not wait for it",
  );
  await using server = await spawnServer();
  await using agent = await spawnAgent(server);
  await server.api("POST", "/apps", { name: "demo" });
  const demo = new URL("../examples/demo", import.meta.url).pathname;
  const deployed = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "--quiet", MAIN, "deploy", "-a", "demo", demo],
    env: server.cliEnv(),
    stdout: "null",
    stderr: "piped",
  }).output();
  if (!deployed.success) throw new Error(new TextDecoder().decode(deployed.stderr));
  const apart = { cliEnv: () => server.cliEnv(), spool: `${agent.dir}/audit` };
  await session(apart, 1024 * 1024);
  const [ownMs, ownStored] = await recordedRuns(apart, bytes);
  row(
    "  same, server and agent processes of their own",
    rate(ownMs),
    rate(plainMs),
    ratio(ownMs, plainMs),
    "the agent's recording cost alone",
  );
  row(
    "  recording stored whole, from the start",
    rate(ownStored),
    rate(plainMs),
    ratio(ownStored, plainMs),
    "the server's storing rate",
  );
}

function plainTarget(sys: TestSystem): Target {
  return { cliEnv: () => sys.cliEnv(), spool: `${sys.dir}/agent/audit` };
}
