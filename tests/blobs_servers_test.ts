import { deepEqual, equal, match } from "node:assert/strict";
/**
 * Two `oneoff server` processes on one PostgreSQL, each with its own data
 * dir: a slug deployed and a file uploaded through the first are used by a
 * run through the second, whose agent downloads them cold, after the
 * first server was killed and its blob files deleted (the database holds
 * every blob; a data dir only caches them).
 * @module
 */
import { createHash } from "node:crypto";
import postgres from "postgres";
import { cli, freePort, startAgent, startServer, waitOnline } from "./_processes.ts";
import { SHARED_KEY_FILES } from "./_cluster.ts";
import { needs, PG_URL } from "./_tools.ts";
import { waitFor } from "./_wait.ts";

const DEMO = new URL("../examples/demo", import.meta.url).pathname;

/** A fresh schema of the test PostgreSQL; disposing drops it. */
async function freshSchema() {
  const schema = `oneoff_test_${crypto.randomUUID().replaceAll("-", "")}`;
  const admin = postgres(PG_URL!, { max: 1, onnotice: () => {} });
  await admin`create schema ${admin(schema)}`;
  const url = new URL(PG_URL!);
  url.searchParams.set("search_path", schema);
  return {
    url: url.href,
    admin,
    schema,
    async [Symbol.asyncDispose]() {
      await admin`drop schema ${admin(schema)} cascade`;
      await admin.end();
    },
  };
}

async function cachedBlobs(dataDir: string): Promise<string[]> {
  const found: string[] = [];
  try {
    for await (const prefix of Deno.readDir(`${dataDir}/blobs/sha256`)) {
      for await (const blob of Deno.readDir(`${dataDir}/blobs/sha256/${prefix.name}`)) {
        found.push(blob.name);
      }
    }
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound)) throw error;
  }
  return found.sort();
}

Deno.test(needs(["postgres", "root"], {
  name:
    "a slug and an upload stored through one server are run through another after the first is gone",
  async fn() {
    await using db = await freshSchema();
    const dir = await Deno.makeTempDir({ prefix: "oneoff-blobs-servers-" });
    try {
      const [portA, portB] = [freePort(), freePort()];
      const database = ["--database", db.url];
      await using a = await startServer(`${dir}/a`, portA, database);
      // The same keys on every server (docs/install.md: the operator copies them).
      await Deno.mkdir(`${dir}/b`);
      for (const name of SHARED_KEY_FILES) {
        await Deno.copyFile(`${dir}/a/${name}`, `${dir}/b/${name}`);
        await Deno.chmod(`${dir}/b/${name}`, 0o600);
      }
      await using _b = await startServer(`${dir}/b`, portB, database);
      const token = (await Deno.readTextFile(`${dir}/a/admin.token`)).trim();
      const envA = { ONEOFF_SERVER: `http://127.0.0.1:${portA}`, ONEOFF_TOKEN: token, HOME: dir };
      const envB = { ...envA, ONEOFF_SERVER: `http://127.0.0.1:${portB}` };
      await using _agent = startAgent(`${dir}/agent`, portB, "vm-b");
      await waitOnline(envB, ["vm-b"]);

      equal((await cli(envA, ["apps", "create", "demo"])).code, 0);
      const deployed = await cli(envA, ["deploy", "-a", "demo", DEMO]);
      equal(deployed.code, 0, deployed.stderr);
      const data = crypto.getRandomValues(new Uint8Array(60_000));
      const uploaded = await fetch(`${envA.ONEOFF_SERVER}/api/apps/demo/uploads`, {
        method: "POST",
        headers: { authorization: `Bearer ${token}` },
        body: data,
      });
      equal(uploaded.status, 201);
      const upload = await uploaded.json() as { sha256: string; size: number };
      const stored = await cachedBlobs(`${dir}/a`);
      equal(stored.length, 2, "the slug and the upload, cached by the server that stored them");
      deepEqual(await cachedBlobs(`${dir}/b`), []);

      a.kill("SIGKILL");
      await a.status();
      await Deno.remove(`${dir}/a/blobs`, { recursive: true });

      const run = await cli(envB, ["run", "-a", "demo", "--no-tty", "--", "head -1 /app/Procfile"]);
      equal(run.code, 0, run.stderr);
      match(run.stdout, /^web: \.\/bin\/web/);

      const api = (method: string, path: string, body?: unknown) =>
        fetch(`${envB.ONEOFF_SERVER}/api${path}`, {
          method,
          headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
          ...(body === undefined ? {} : { body: JSON.stringify(body) }),
        }).then((res) => res.json());
      const created = await api("POST", "/apps/demo/runs", {
        command: "sha256sum /tmp/uploads/data.bin",
        uploads: [{ name: "data.bin", sha256: upload.sha256 }],
      });
      const id = created.run.id;
      const ended = await api("GET", `/apps/demo/runs/${id}?wait=30`);
      equal(ended.run.exit_code, 0, JSON.stringify(ended));
      const hash = createHash("sha256").update(data).digest("hex");
      const lines = await waitFor(async () => {
        const logs = await api("GET", `/apps/demo/logs?filter=${created.run.label}`);
        return logs.lines.length > 0 && logs.lines.map((l: { line: string }) => l.line);
      }, { message: "the run's output" });
      deepEqual(lines.map((line: string) => line.split(" ")[0]), [hash]);
      deepEqual(await cachedBlobs(`${dir}/b`), stored, "B's cache filled from PostgreSQL");
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
}));
