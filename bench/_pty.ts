/**
 * `pty`: bytes from a process through a pseudo-terminal to the client: the
 * whole CLI in script(1)'s terminal running `head -c N /dev/zero` in a TTY
 * run, against script(1) running the same `head` directly (one terminal,
 * no oneoff in between).
 * @module
 */
import type { BenchContext } from "./_case.ts";
import { MAIN, MIB, rounds, row, spread } from "./_util.ts";

/** Runs `command` under `script -qc`; resolves with bytes per second of `bytes`. */
async function throughScript(
  command: string,
  bytes: number,
  env?: Record<string, string>,
): Promise<number> {
  const start = performance.now();
  const out = await new Deno.Command("script", {
    args: ["-qec", command, "/dev/null"],
    stdin: "null",
    stdout: "null",
    stderr: "piped",
    ...(env ? { env } : {}),
  }).output();
  const seconds = (performance.now() - start) / 1000;
  if (!out.success) {
    throw new Error(`script -qc "${command}" failed: ${new TextDecoder().decode(out.stderr)}`);
  }
  return bytes / seconds;
}

/** Prints the PTY throughput row. */
export async function benchPty(ctx: BenchContext): Promise<void> {
  const sys = await ctx.system();
  const bytes = ctx.pick(200, 16) * MIB;
  // Two rounds each (the spread was ±12 % over three): at a few MiB/s through a PTY on a
  // loaded machine each round of 200 MiB takes half a minute, and the whole bench has 10.
  const n = ctx.pick(2, 1);
  const head = `head -c ${bytes} /dev/zero`;
  const base = await rounds(n, () => throughScript(head, bytes), 0);
  const cli = `${Deno.execPath()} run -A --quiet ${MAIN} run -a demo --tty --silent -- '${head}'`;
  const ours = await rounds(n, () => throughScript(cli, bytes, sys.cliEnv()), ctx.pick(1, 0));
  row(
    `PTY stream, ${bytes / MIB} MiB (process → client)`,
    `${(ours.median / MIB).toFixed(0)} MiB/s`,
    `${(base.median / MIB).toFixed(0)} MiB/s`,
    `${((ours.median / base.median) * 100).toFixed(0)}%`,
    "-  (baseline: script -qc 'head -c N /dev/zero' /dev/null)",
    spread(ours),
  );
}
