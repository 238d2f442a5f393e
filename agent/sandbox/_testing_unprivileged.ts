/**
 * Run by the tests as uid 65534 (`setpriv`, `deno run --no-config`): a
 * developer's laptop, where the sandbox has no root. Prints one JSON object
 * with the warnings and what one run saw.
 * @module
 */
import { createSandbox } from "./mod.ts";

const top = await Deno.makeTempDir({ prefix: "oneoff-unprivileged-" });
try {
  const slugDir = `${top}/slug`;
  await Deno.mkdir(slugDir);
  await Deno.writeTextFile(`${slugDir}/hello.txt`, "hello\n");
  const sandbox = await createSandbox("bwrap", { workDir: `${top}/work` });
  const process = await sandbox.spawn({
    runId: "unprivileged",
    slugDir,
    command: "id -u; grep CapEff /proc/self/status; echo new > /app/new.txt && cat /app/new.txt; " +
      "dd if=/dev/zero of=/tmp/fill bs=64k count=64",
    env: { PATH: "/usr/bin:/bin" },
    limits: { memoryBytes: 64 << 20, pids: 64, cpuMillis: 500, tmpBytes: 1 << 20, openFiles: 256 },
    network: "host",
  });
  await process.stdin.close();
  const [stdout, stderr, status] = await Promise.all([
    new Response(process.stdout).text(),
    new Response(process.stderr!).text(),
    process.status,
  ]);
  const slug = (await Array.fromAsync(Deno.readDir(slugDir))).map((entry) => entry.name);
  const runs = (await Array.fromAsync(Deno.readDir(`${top}/work/runs`))).map((entry) => entry.name);
  await Deno.stdout.write(
    new TextEncoder().encode(
      JSON.stringify({ warnings: sandbox.warnings, stdout, stderr, status, slug, runs }),
    ),
  );
} finally {
  await Deno.remove(top, { recursive: true });
}
