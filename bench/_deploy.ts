/**
 * `deploy`: a 200 MiB slug of random (incompressible) data through the
 * whole CLI to a server in its own process: the time, and the server's peak
 * resident memory while it receives, hashes and checks the slug.
 * @module
 */
import type { BenchContext } from "./_case.ts";
import { spawnServer } from "./_procs.ts";
import { MAIN, MIB, mib, procStatus, row, rssOf, time } from "./_util.ts";

/** How often the server's resident memory is sampled during the deploy. */
const SAMPLE_MS = 20;

/** Writes `mibs` MiB of random data as a .tar.gz made by the system's tar. */
export async function makeSlug(dir: string, mibs: number): Promise<string> {
  await Deno.mkdir(`${dir}/slug`);
  const out = await new Deno.Command("sh", {
    args: [
      "-c",
      // Several files, like a real slug; gzip -1 because random data does not compress anyway.
      `for i in 1 2 3 4; do head -c ${
        mibs / 4
      }M /dev/urandom > slug/data$i.bin; done && echo 'web: sleep 1' > slug/Procfile && tar -C slug -cf - . | gzip -1 > slug.tar.gz`,
    ],
    cwd: dir,
    stderr: "piped",
  }).output();
  if (!out.success) {
    throw new Error(`Cannot make the slug: ${new TextDecoder().decode(out.stderr)}`);
  }
  await Deno.remove(`${dir}/slug`, { recursive: true });
  return `${dir}/slug.tar.gz`;
}

/** Samples a process's VmRSS until stopped; resolves with the highest value seen. */
export function samplePeak(pid: number): { stop(): Promise<number> } {
  let peak = 0;
  let running = true;
  const loop = (async () => {
    while (running) {
      peak = Math.max(peak, await rssOf(pid).catch(() => 0));
      await new Promise((r) => setTimeout(r, SAMPLE_MS));
    }
  })();
  return {
    async stop() {
      running = false;
      await loop;
      return peak;
    },
  };
}

/** Prints the deploy time and the server's peak memory during it. */
export async function benchDeploy(ctx: BenchContext): Promise<void> {
  const mibs = ctx.pick(200, 8);
  const dir = await Deno.makeTempDir({ prefix: "oneoff-bench-deploy-" });
  try {
    const slug = await makeSlug(dir, mibs);
    const bytes = (await Deno.stat(slug)).size;
    // What the server must do at least: store a copy, hash it, read the archive through.
    const base = await time("sh", [
      "-c",
      `cat ${slug} > ${dir}/copy && sha256sum ${dir}/copy > /dev/null && tar -tzf ${dir}/copy > /dev/null && rm ${dir}/copy`,
    ]);
    await using server = await spawnServer();
    await server.api("POST", "/apps", { name: "big" });
    const idle = await rssOf(server.pid);
    const hwmBefore = await procStatus(server.pid, "VmHWM");
    const sampler = samplePeak(server.pid);
    const ours = await time(
      Deno.execPath(),
      ["run", "-A", "--quiet", MAIN, "deploy", "-a", "big", slug],
      server.cliEnv(),
    );
    const sampled = await sampler.stop();
    const hwm = await procStatus(server.pid, "VmHWM");
    // VmHWM covers the whole life of the process: it counts only if the deploy raised it.
    const peak = hwm > hwmBefore ? Math.max(sampled, hwm) : sampled;
    row(
      `deploy ${mibs} MiB slug, whole CLI (time)`,
      `${(ours / 1000).toFixed(2)} s`,
      `${(base / 1000).toFixed(2)} s`,
      `${(ours / base).toFixed(2)}x`,
      `-  (baseline: cat + sha256sum + tar -tzf; ${
        (bytes / MIB / (ours / 1000)).toFixed(0)
      } MiB/s)`,
    );
    row(
      `deploy ${mibs} MiB slug, server peak RSS`,
      mib(peak),
      mib(idle),
      `${(peak / idle).toFixed(2)}x`,
      `-  (baseline: the server before; sampled every ${SAMPLE_MS} ms ${mib(sampled)}, VmHWM ${
        mib(hwm)
      })`,
    );
  } finally {
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
}
