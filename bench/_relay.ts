/**
 * `relay`: the attach stream through the server (`--via server`) next to
 * the direct path (`--via direct`), same system, same run: a no-TTY stream's
 * throughput each way (recording off) and `oneoff run -- true`'s start time.
 * @module
 */
import { startSystem } from "../tests/_system.ts";
import { MAIN, median, medianOf, row, time } from "./_util.ts";

const MIB = 2 ** 20;

async function throughput(
  env: Record<string, string>,
  via: string,
  bytes: number,
  direction: "in" | "out",
): Promise<number> {
  const cli =
    `${Deno.execPath()} run -A --quiet ${MAIN} run -a demo --no-tty --silent --via ${via} --`;
  const cmd = direction === "out"
    ? `${cli} 'head -c ${bytes} /dev/zero' > /dev/null`
    : `head -c ${bytes} /dev/zero | ${cli} 'cat > /dev/null'`;
  const start = performance.now();
  const out = await new Deno.Command("sh", { args: ["-c", cmd], env }).output();
  if (!out.success) throw new Error(new TextDecoder().decode(out.stderr));
  return bytes / ((performance.now() - start) / 1000);
}

/** Prints the relay rows: throughput both ways and start time, relay vs direct. */
export async function benchRelay(mib = 256): Promise<void> {
  await using sys = await startSystem({ record: false });
  const env = sys.cliEnv();
  const bytes = mib * MIB;
  for (const dir of ["out", "in"] as const) {
    const way = dir === "out" ? "process → client" : "client → process";
    const direct = median([
      await throughput(env, "direct", bytes, dir),
      await throughput(env, "direct", bytes, dir),
      await throughput(env, "direct", bytes, dir),
    ]);
    const relay = median([
      await throughput(env, "server", bytes, dir),
      await throughput(env, "server", bytes, dir),
      await throughput(env, "server", bytes, dir),
    ]);
    row(
      `no-TTY stream via server (${way})`,
      `${(relay / MIB).toFixed(0)} MiB/s`,
      `${(direct / MIB).toFixed(0)} MiB/s`,
      `${((relay / direct) * 100).toFixed(0)}%`,
      `relay vs direct (${mib} MiB, whole CLI, recording off)`,
    );
  }
  const runTrue = (via: string) =>
    time(Deno.execPath(), [
      "run",
      "-A",
      "--quiet",
      MAIN,
      "run",
      "-a",
      "demo",
      "--no-tty",
      "--silent",
      "--via",
      via,
      "--",
      "true",
    ], env);
  await runTrue("direct");
  const n = 11;
  const direct = await medianOf(n, () => runTrue("direct"));
  const relay = await medianOf(n, () => runTrue("server"));
  row(
    "oneoff run -- true via server (whole CLI)",
    `${relay.toFixed(1)} ms`,
    `${direct.toFixed(1)} ms`,
    `${(relay / direct).toFixed(2)}x`,
    "relay vs direct start time",
  );
}
