/**
 * `blobs`: where slugs live with several servers. A 200 MiB deploy through
 * one server and a cold download of it (the agent's own request, with its
 * credential) through another, both on one PostgreSQL that holds the
 * blobs; against the same two on one server that keeps them as files
 * (SQLite, today's single-server layout), in the same run. Time and the
 * serving server's peak resident memory.
 * @module
 */
import { CREDENTIAL_FILE } from "../agent/mod.ts";
import type { BenchContext } from "./_case.ts";
import { makeSlug, samplePeak } from "./_deploy.ts";
import { type ServerProcess, spawnAgent, spawnServer } from "./_procs.ts";
import { MAIN, MIB, mib, row, sleep } from "./_util.ts";

interface Measured {
  ms: number;
  peak: number;
}

async function deploy(server: ServerProcess, slug: string): Promise<Measured> {
  await server.api("POST", "/apps", { name: "big" });
  const sampler = samplePeak(server.pid);
  const start = performance.now();
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "--quiet", MAIN, "deploy", "-a", "big", slug],
    env: server.cliEnv(),
    stdout: "null",
    stderr: "piped",
  }).output();
  const ms = performance.now() - start;
  const peak = await sampler.stop();
  if (!out.success) throw new Error(`Deploy failed: ${new TextDecoder().decode(out.stderr)}`);
  return { ms, peak };
}

// The agent's download of a slug, as its slug cache makes it, read to the end.
/**
 * The credential an agent keeps once enrolled: the server may show it online
 * a moment before the agent has written the file.
 */
async function credentialOf(dir: string): Promise<string> {
  for (let i = 0;; i++) {
    try {
      return (await Deno.readTextFile(`${dir}/${CREDENTIAL_FILE}`)).trim();
    } catch (error) {
      if (!(error instanceof Deno.errors.NotFound) || i >= 200) throw error;
      await sleep(50);
    }
  }
}

async function download(server: ServerProcess, credential: string, sha256: string) {
  const sampler = samplePeak(server.pid);
  const start = performance.now();
  const res = await fetch(`${server.url}/agent/blobs/${sha256}`, {
    headers: { authorization: `Bearer ${credential}` },
  });
  if (!res.ok || !res.body) throw new Error(`Download failed: HTTP ${res.status}`);
  let bytes = 0;
  for await (const chunk of res.body) bytes += chunk.length;
  const ms = performance.now() - start;
  return { ms, peak: await sampler.stop(), bytes };
}

async function sha256sum(path: string): Promise<string> {
  const out = await new Deno.Command("sha256sum", { args: [path], stdout: "piped" }).output();
  return new TextDecoder().decode(out.stdout).split(" ")[0]!;
}

/** Prints the deploy and cold download figures, PostgreSQL blobs against local files. */
export async function benchBlobs(ctx: BenchContext): Promise<void> {
  const mibs = ctx.pick(200, 8);
  const dir = await Deno.makeTempDir({ prefix: "oneoff-bench-blobs-" });
  try {
    const slug = await makeSlug(dir, mibs);
    const sha256 = await sha256sum(slug);
    const size = (await Deno.stat(slug)).size;
    let local: { deploy: Measured; download: Measured };
    {
      await using server = await spawnServer();
      await using agent = await spawnAgent(server);
      const credential = await credentialOf(agent.dir);
      local = {
        deploy: await deploy(server, slug),
        download: await download(server, credential, sha256),
      };
    }
    if (!ctx.postgres) {
      console.log("(blobs in PostgreSQL skipped: pass --postgres URL or set ONEOFF_TEST_POSTGRES)");
      return;
    }
    const pg = ctx.postgres;
    const schema = `bench_blobs_${Date.now()}`;
    const url = `${pg}${pg.includes("?") ? "&" : "?"}search_path=${schema}`;
    const postgres = (await import("postgres")).default;
    const admin = postgres(pg, { max: 1, onnotice: () => {} });
    await admin.unsafe(`create schema ${schema}`);
    try {
      await using a = await spawnServer(["--database", url]);
      await using b = await spawnServer(["--database", url], { token: a.token, keysFrom: a.dir });
      await using agent = await spawnAgent(b);
      const credential = await credentialOf(agent.dir);
      const put = await deploy(a, slug);
      const cold = await download(b, credential, sha256);
      const warm = await download(b, credential, sha256);
      if (cold.bytes !== size || warm.bytes !== size) {
        throw new Error(`Downloaded ${cold.bytes} and ${warm.bytes} bytes of ${size}`);
      }
      const seconds = (ms: number) => `${(ms / 1000).toFixed(2)} s`;
      const rate = (ms: number) => `${(size / MIB / (ms / 1000)).toFixed(0)} MiB/s`;
      const times = (ours: Measured, base: Measured, what: string) => {
        row(
          `blobs: ${what} (time)`,
          seconds(ours.ms),
          seconds(base.ms),
          `${(ours.ms / base.ms).toFixed(2)}x`,
          `-  (baseline: the same on one server with files; ${rate(ours.ms)} vs ${rate(base.ms)})`,
        );
        row(
          `blobs: ${what} (server peak RSS)`,
          mib(ours.peak),
          mib(base.peak),
          `${(ours.peak / base.peak).toFixed(2)}x`,
          "-  (baseline: the same on one server with files)",
        );
      };
      times(put, local.deploy, `deploy ${mibs} MiB into PostgreSQL`);
      times(cold, local.download, `cold download via another server`);
      times(warm, local.download, `download again, cached`);
    } finally {
      await admin.unsafe(`drop schema ${schema} cascade`);
      await admin.end();
    }
  } finally {
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
}
