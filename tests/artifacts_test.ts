import { deepEqual, equal, match, ok } from "node:assert/strict";
/**
 * Run artifacts end to end: the roles as separate processes and a real
 * bwrap sandbox. A detached run leaves a 200 MiB report in /tmp/downloads
 * and gets it back sha256-exact through `oneoff artifacts get`, while the
 * names the check refuses, a symbolic link to /etc/passwd, a directory and
 * a FIFO are refused with their reasons in the run's end state; an
 * attached run's files are kept too, its limit refuses loudly, and a member
 * of another app gets 403.
 * @module
 */
import { createHash } from "node:crypto";
import type { ArtifactInfo, RunInfo, TimelineEvent } from "../protocol/mod.ts";
import { cli, freePort, startAgent, startServer, waitOnline } from "./_processes.ts";
import { needs } from "./_tools.ts";
import { waitFor } from "./_wait.ts";

const DEMO = new URL("../examples/demo", import.meta.url).pathname;
const MIB = 1024 * 1024;

async function fileSha256(path: string): Promise<string> {
  const hash = createHash("sha256");
  using file = await Deno.open(path);
  for await (const chunk of file.readable) hash.update(chunk);
  return hash.digest("hex");
}

/** Peak and current resident memory of a process, in MiB. */
async function rss(pid: number): Promise<{ peak: number; now: number }> {
  const status = await Deno.readTextFile(`/proc/${pid}/status`);
  const kib = (field: string) => Number(new RegExp(`^${field}:\\s+(\\d+)`, "m").exec(status)![1]);
  return { peak: Math.round(kib("VmHWM") / 1024), now: Math.round(kib("VmRSS") / 1024) };
}

async function runInfo(env: Record<string, string>, label: string): Promise<RunInfo> {
  const ps = await cli(env, ["ps", "-a", "demo", "--json"]);
  const run = (JSON.parse(ps.stdout) as RunInfo[]).find((r) => r.label === label);
  if (!run) throw new Error(`No ${label} in ps: ${ps.stdout}${ps.stderr}`);
  return run;
}

async function ended(env: Record<string, string>, label: string): Promise<RunInfo> {
  let info: RunInfo | undefined;
  await waitFor(async () => {
    info = await runInfo(env, label);
    return info.ended_at !== null;
  }, { message: `${label} to end`, timeoutMs: 120_000 });
  return info!;
}

// The server's and the agent's JavaScript heap is capped far below the
// report (as in audit_memory_test.ts): a role that held it whole would die,
// and without the cap V8 lets garbage pile up before it collects.
const HEAP_MB = 64;
const BOUND_MB = HEAP_MB * 2 + 64;

async function setUp(dir: string, extra: string[] = []) {
  const port = freePort();
  const flags = Deno.env.get("DENO_V8_FLAGS");
  Deno.env.set("DENO_V8_FLAGS", `--max-old-space-size=${HEAP_MB}`);
  // Both processes are spawned at once; the variable is only for them.
  const starting = startServer(`${dir}/server`, port, extra);
  const agent = startAgent(`${dir}/agent`, port, "vm-1");
  if (flags === undefined) Deno.env.delete("DENO_V8_FLAGS");
  else Deno.env.set("DENO_V8_FLAGS", flags);
  const server = await starting;
  const token = (await Deno.readTextFile(`${dir}/server/admin.token`)).trim();
  const env = { ONEOFF_SERVER: `http://127.0.0.1:${port}`, ONEOFF_TOKEN: token, HOME: dir };
  await waitOnline(env, ["vm-1"]);
  equal((await cli(env, ["apps", "create", "demo"])).code, 0);
  const deployed = await cli(env, ["deploy", "-a", "demo", DEMO]);
  equal(deployed.code, 0, deployed.stderr);
  return { server, agent, env, port };
}

// What the run leaves: the report, a small file, and everything the check refuses.
const LEAVES = [
  "head -c 209715200 /dev/urandom > /tmp/downloads/report.bin",
  "sha256sum /tmp/downloads/report.bin",
  "echo fine > /tmp/downloads/ok.txt",
  `touch "/tmp/downloads/$(printf 'a\\nb')"`,
  `touch "/tmp/downloads/$(printf 'evil\\342\\200\\256txt.exe')"`,
  "ln -s /etc/passwd /tmp/downloads/p",
  "ln -s ../../etc/shadow /tmp/downloads/up",
  "mkdir /tmp/downloads/sub && echo x > /tmp/downloads/sub/y",
  "mkfifo /tmp/downloads/fifo",
  // A hard link cannot leave the mount of /tmp/downloads: the kernel says EXDEV.
  "ln /etc/passwd /tmp/downloads/h 2>/dev/null || echo no hard link out",
].join(" && ");

Deno.test(
  needs(["root"], {
    name:
      "a detached run's 200 MiB report comes back sha256-exact; odd names, links, a directory and a FIFO are refused in its end state",
    async fn() {
      const dir = await Deno.makeTempDir({ prefix: "oneoff-artifacts-" });
      try {
        const { server, agent, env } = await setUp(dir);
        await using _server = server;
        await using _agent = agent;
        const before = { server: await rss(server.pid), agent: await rss(agent.pid) };
        const started = Date.now();
        const run = await cli(env, ["run", "-a", "demo", "-d", "--", LEAVES]);
        equal(run.code, 0, run.stderr);
        const info = await ended(env, "one-off-1");
        const endedMs = Date.now() - started;
        equal(info.state, "exited", info.reason ?? "");
        equal(info.exit_code, 0);
        const reason = info.reason ?? "";
        for (
          const expected of [
            'refused "a\\nb": the name holds control or invisible characters',
            'refused "evil\\u202etxt.exe": the name holds control or invisible characters',
            'refused "fifo": not a regular file',
            'refused "p": a symbolic link: links are never followed',
            'refused "sub": a directory: only files directly in /tmp/downloads are kept',
            'refused "up": a symbolic link',
          ]
        ) ok(reason.includes(expected), `${expected} in ${reason}`);
        match(reason, /^artifacts: /);
        deepEqual(info.artifacts, { files: 2, bytes: 200 * MIB + 5, refused: 6 });
        match((await cli(env, ["ps", "-a", "demo"])).stdout, /FILES[\s\S]*200 MiB\), 6 refused/);

        const listed = await cli(env, ["artifacts", "list", "-a", "demo", "one-off-1", "--json"]);
        const artifacts = JSON.parse(listed.stdout) as ArtifactInfo[];
        deepEqual(
          artifacts.filter((a) => a.refused === null).map((a) => [a.name, a.size]),
          [["ok.txt", 5], ["report.bin", 200 * MIB]],
        );

        const out = `${dir}/out`;
        const t0 = Date.now();
        const got = await cli(env, ["artifacts", "get", "-a", "demo", "one-off-1", "-o", out]);
        const getMs = Date.now() - t0;
        equal(got.code, 0, got.stderr);
        const logs = await cli(env, ["logs", "-a", "demo", "--filter", "one-off-1"]);
        const printed = /([0-9a-f]{64}) {2}\/tmp\/downloads\/report\.bin/.exec(logs.stdout)?.[1];
        equal(await fileSha256(`${out}/report.bin`), printed);
        equal(await Deno.readTextFile(`${out}/ok.txt`), "fine\n");
        match(logs.stdout, /no hard link out/);
        // Nothing outside the run was read: only the two files are there, on disk and in the blobs.
        deepEqual((await Array.fromAsync(Deno.readDir(out))).map((e) => e.name).sort(), [
          "ok.txt",
          "report.bin",
        ]);
        const passwd = await fileSha256("/etc/passwd");
        const blobs = await Array.fromAsync(
          Deno.readDir(`${dir}/server/blobs/sha256/${passwd.slice(0, 2)}`),
        )
          .catch(() => []);
        ok(!blobs.some((b) => b.name === passwd), "the host's /etc/passwd is no blob");

        // An existing file is not replaced without --force.
        const again = await cli(env, [
          "artifacts",
          "get",
          "-a",
          "demo",
          "one-off-1",
          "ok.txt",
          "-o",
          out,
        ]);
        equal(again.code, 1);
        match(again.stderr, /exists already, give --force/);
        const forced = await cli(env, [
          "artifacts",
          "get",
          "-a",
          "demo",
          "one-off-1",
          "ok.txt",
          "-o",
          out,
          "--force",
        ]);
        equal(forced.code, 0, forced.stderr);

        const timeline = await cli(env, ["timeline", "-a", "demo", "--json"]);
        const event = (JSON.parse(timeline.stdout) as TimelineEvent[]).find((e) =>
          e.kind === "run.artifacts"
        );
        const data = event?.data as { files: number; bytes: number; refused: string[] };
        deepEqual(
          [data.files, data.bytes, data.refused.length],
          [2, 200 * MIB + 5, 6],
        );

        const after = { server: await rss(server.pid), agent: await rss(agent.pid) };
        const sent = `${agent.stdout}${agent.stderr}`.split("\n")
          .filter((line) => line.includes('"run artifact sent"') && line.includes("report.bin"))
          .map((line) => (JSON.parse(line) as { ms: number }).ms);
        equal(sent.length, 1, "the agent says once that it sent the report");
        console.error(
          `artifacts: 200 MiB run end-to-end ${endedMs} ms (written, kept, ended), of which the agent's hash and upload ${
            sent[0]
          } ms; get ${getMs} ms; ` +
            `server RSS ${before.server.now} -> peak ${after.server.peak} MiB; ` +
            `agent RSS ${before.agent.now} -> peak ${after.agent.peak} MiB`,
        );
        // Streamed, never held whole: far below the 200 MiB that went through each.
        ok(after.server.peak < BOUND_MB, `server peak ${after.server.peak} MiB`);
        ok(after.agent.peak < BOUND_MB, `agent peak ${after.agent.peak} MiB`);
      } finally {
        await Deno.remove(dir, { recursive: true });
      }
    },
  }),
);

Deno.test(
  needs(["root"], {
    name:
      "an attached run's files are kept up to the server's limit, the rest refused loudly; another app's member gets 403",
    async fn() {
      const dir = await Deno.makeTempDir({ prefix: "oneoff-artifacts-" });
      try {
        const { server, agent, env, port } = await setUp(dir, ["--max-artifact-bytes", "1MiB"]);
        await using _server = server;
        await using _agent = agent;
        const run = await cli(env, [
          "run",
          "-a",
          "demo",
          "--no-tty",
          "--",
          "head -c 600000 /dev/zero > /tmp/downloads/a.bin; head -c 600000 /dev/zero > /tmp/downloads/b.bin; echo done",
        ], "");
        equal(run.code, 0, run.stderr);
        match(run.stdout, /done/);
        const info = await ended(env, "one-off-1");
        match(
          info.reason ?? "",
          /artifacts: refused "b\.bin": 600000 bytes: the run's files pass the server's limit of 1048576 bytes \(--max-artifact-bytes\)/,
        );
        deepEqual(info.artifacts, { files: 1, bytes: 600000, refused: 1 });
        const got = await cli(env, [
          "artifacts",
          "get",
          "-a",
          "demo",
          "one-off-1",
          "a.bin",
          "-o",
          dir,
        ]);
        equal(got.code, 0, got.stderr);
        equal((await Deno.stat(`${dir}/a.bin`)).size, 600000);

        // /tmp/downloads is no scratch space: past twice the limit, the run is stopped.
        const hog = await cli(env, [
          "run",
          "-a",
          "demo",
          "-d",
          "--",
          "head -c 5000000 /dev/zero > /tmp/downloads/x; sleep 60",
        ]);
        equal(hog.code, 0, hog.stderr);
        const stopped = await ended(env, "one-off-2");
        equal(stopped.state, "stopped");
        match(
          stopped.reason ?? "",
          /^Stopped: \/tmp\/downloads held more than 2097152 bytes, twice the artifact limit of 1048576 bytes; it is not scratch space; artifacts: refused "x": 5000000 bytes/,
        );

        // A member of another app sees none of it.
        equal((await cli(env, ["apps", "create", "other"])).code, 0);
        const member = await cli(env, ["tokens", "create", "-a", "other", "--name", "eve"]);
        const eve = member.stdout.match(/oo_\S+/)![0];
        const listed = await cli({ ...env, ONEOFF_TOKEN: eve }, [
          "artifacts",
          "list",
          "-a",
          "demo",
          "one-off-1",
        ]);
        equal(listed.code, 1);
        match(listed.stderr, /may not use app "demo"/);
        const res = await fetch(
          `http://127.0.0.1:${port}/api/apps/demo/runs/one-off-1/artifacts/a.bin`,
          { headers: { authorization: `Bearer ${eve}` } },
        );
        await res.body?.cancel();
        equal(res.status, 403);
        // And no agent credential, no upload.
        const put = await fetch(
          `http://127.0.0.1:${port}/agent/runs/${info.id}/artifacts/x.bin`,
          { method: "PUT", body: "x", headers: { authorization: `Bearer ${eve}` } },
        );
        await put.body?.cancel();
        equal(put.status, 401);
      } finally {
        await Deno.remove(dir, { recursive: true });
      }
    },
  }),
);

Deno.test(
  needs(["root"], {
    name:
      "a run's files wait for a server that was down when the run ended, and are kept once it is back",
    async fn() {
      const dir = await Deno.makeTempDir({ prefix: "oneoff-artifacts-" });
      try {
        const { server, agent, env, port } = await setUp(dir);
        await using _agent = agent;
        const run = await cli(env, [
          "run",
          "-a",
          "demo",
          "-d",
          "--",
          "echo kept > /tmp/downloads/f.txt; sleep 2",
        ]);
        equal(run.code, 0, run.stderr);
        await waitFor(async () => (await runInfo(env, "one-off-1")).state === "running", {
          message: "the run to start",
        });
        server.kill("SIGKILL");
        await server.status();
        // The sandbox is gone (its scratch dir with it): the run has ended, its file not yet sent.
        await waitFor(
          async () => (await Array.fromAsync(Deno.readDir(`${dir}/agent/work/runs`))).length === 0,
          { message: "the sandbox to exit", timeoutMs: 30_000 },
        );
        await using _again = await startServer(`${dir}/server`, port);
        const info = await ended(env, "one-off-1");
        deepEqual([info.state, info.reason, info.artifacts], ["exited", null, {
          files: 1,
          bytes: 5,
          refused: 0,
        }]);
        const got = await cli(env, ["artifacts", "get", "-a", "demo", "one-off-1", "-o", dir]);
        equal(got.code, 0, got.stderr);
        equal(await Deno.readTextFile(`${dir}/f.txt`), "kept\n");
      } finally {
        await Deno.remove(dir, { recursive: true });
      }
    },
  }),
);

Deno.test(
  needs(["root"], {
    name: "an agent killed before a run's files were sent says so in the run's end once it is back",
    async fn() {
      const dir = await Deno.makeTempDir({ prefix: "oneoff-artifacts-" });
      try {
        const { server, agent, env, port } = await setUp(dir);
        await using _server = server;
        const run = await cli(env, [
          "run",
          "-a",
          "demo",
          "-d",
          "--",
          "echo lost > /tmp/downloads/f.txt; sleep 2",
        ]);
        equal(run.code, 0, run.stderr);
        await waitFor(async () => (await runInfo(env, "one-off-1")).state === "running", {
          message: "the run to start",
        });
        // A frozen server: the agent's upload hangs, and the agent dies under it.
        server.kill("SIGSTOP");
        await waitFor(
          async () => (await Array.fromAsync(Deno.readDir(`${dir}/agent/work/runs`))).length === 0,
          { message: "the sandbox to exit", timeoutMs: 30_000 },
        );
        agent.kill("SIGKILL");
        await agent.status();
        server.kill("SIGCONT");
        await using _again = startAgent(`${dir}/agent`, port, "vm-1");
        const info = await ended(env, "one-off-1");
        deepEqual([info.state, info.reason], [
          "failed",
          "The agent stopped while the run was running; artifacts: not kept: the agent stopped before they were sent",
        ]);
      } finally {
        await Deno.remove(dir, { recursive: true });
      }
    },
  }),
);
