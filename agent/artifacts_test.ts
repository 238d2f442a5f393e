import { deepEqual, equal, match, ok, rejects } from "node:assert/strict";
import {
  type ArtifactRefusal,
  decodeArtifactsDone,
  MAX_ARTIFACTS_PER_RUN,
} from "../protocol/mod.ts";
import {
  type ArtifactFile,
  ArtifactRefused,
  type ArtifactSink,
  collectArtifacts,
  deliverArtifacts,
  hashArtifact,
  withRetry,
} from "./artifacts.ts";

async function downloads(): Promise<string> {
  const dir = await Deno.makeTempDir({ prefix: "oneoff-artifacts-" });
  await Deno.writeTextFile(`${dir}/b.txt`, "bbbb");
  await Deno.writeTextFile(`${dir}/a.txt`, "aa");
  await Deno.writeTextFile(`${dir}/big.bin`, "x".repeat(100));
  await Deno.writeTextFile(`${dir}/bad\tname`, "");
  await Deno.symlink("/etc/passwd", `${dir}/p`);
  await Deno.mkdir(`${dir}/sub`);
  return dir;
}

Deno.test("collecting keeps regular files in name order up to the limit and says why the rest are refused", async () => {
  const dir = await downloads();
  try {
    const { files, refused } = await collectArtifacts(dir, 10);
    deepEqual(files.map((f) => [f.name, f.size]), [["a.txt", 2], ["b.txt", 4]]);
    deepEqual(refused, [
      {
        name: '"bad\\tname"',
        reason: "the name holds control or invisible characters, or is not UTF-8",
      },
      {
        name: '"big.bin"',
        reason:
          "100 bytes: the run's files pass the server's limit of 10 bytes (--max-artifact-bytes)",
      },
      { name: '"p"', reason: "a symbolic link: links are never followed" },
      { name: '"sub"', reason: "a directory: only files directly in /tmp/downloads are kept" },
    ]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a file swapped after its check is not read", async () => {
  const dir = await downloads();
  try {
    const { files } = await collectArtifacts(dir, 10);
    const a = files[0]!;
    await Deno.remove(a.path);
    await Deno.symlink("/etc/passwd", a.path);
    await rejects(hashArtifact(a), ArtifactRefused);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("delivery tries a file again while the server is away, and its end state names what was refused or lost", async () => {
  const dir = await downloads();
  try {
    const sent: string[] = [];
    let reported: ArtifactRefusal[] = [];
    let failures = 2;
    const sink: ArtifactSink = {
      retryMs: 5_000,
      put(_runId: string, file: ArtifactFile) {
        if (file.name === "a.txt" && failures-- > 0) {
          return Promise.reject(new Error("ECONNREFUSED"));
        }
        if (file.name === "b.txt") return Promise.reject(new ArtifactRefused("the server says no"));
        sent.push(file.name);
        return Promise.resolve();
      },
      done(_runId: string, refused: ArtifactRefusal[]) {
        reported = refused;
        return Promise.resolve();
      },
    };
    const said = await deliverArtifacts("run-1", dir, { maxBytes: 10, sink });
    deepEqual(sent, ["a.txt"]);
    equal(reported.length, 5);
    match(said ?? "", /^artifacts: refused "bad\\tname": /);
    match(said ?? "", /refused "b\.txt": the server says no$/);

    const lost = await deliverArtifacts("run-1", dir, {
      maxBytes: 10,
      sink: { ...sink, retryMs: 300, put: () => Promise.reject(new Error("ECONNREFUSED")) },
    });
    match(lost ?? "", /"a\.txt" not kept: ECONNREFUSED/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("an empty downloads dir has nothing to say", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const sink: ArtifactSink = {
      retryMs: 0,
      put: () => Promise.reject(new Error("never")),
      done: () => Promise.reject(new Error("never")),
    };
    equal(await deliverArtifacts("run-1", dir, { maxBytes: 10, sink }), null);
    equal(await withRetry(() => Promise.resolve(), 0), undefined);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a run leaving far more files than it may keep still has its refusals reported", async () => {
  const dir = await Deno.makeTempDir({ prefix: "oneoff-artifacts-" });
  try {
    const total = 2 * MAX_ARTIFACTS_PER_RUN + 500;
    for (let i = 0; i < total; i++) {
      await Deno.writeTextFile(`${dir}/f${String(i).padStart(5, "0")}`, "");
    }
    let reported: ArtifactRefusal[] = [];
    const sink: ArtifactSink = {
      retryMs: 0,
      put: () => Promise.resolve(),
      // What the server's route checks the report with.
      done(_runId: string, refused: ArtifactRefusal[]) {
        const decoded = decodeArtifactsDone({ refused });
        if (!decoded.ok) return Promise.reject(new ArtifactRefused(decoded.error));
        reported = decoded.value.refused;
        return Promise.resolve();
      },
    };
    const said = await deliverArtifacts("run-1", dir, { maxBytes: 1024, sink });
    equal(reported.length, MAX_ARTIFACTS_PER_RUN);
    match(reported.at(-1)!.reason, /^and 501 more files, not listed:/);
    ok(!(said ?? "").includes("could not be reported"), said ?? "");
    ok((said ?? "").length < 200_000, `${(said ?? "").length} characters`);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a server away for good costs the delivery its retry time once, not once per file", async () => {
  const dir = await Deno.makeTempDir({ prefix: "oneoff-artifacts-" });
  try {
    for (let i = 0; i < 8; i++) await Deno.writeTextFile(`${dir}/f${i}`, "x");
    const tries = new Map<string, number>();
    const sink: ArtifactSink = {
      retryMs: 600,
      put(_runId: string, file: ArtifactFile) {
        tries.set(file.name, (tries.get(file.name) ?? 0) + 1);
        return Promise.reject(new Error("ECONNREFUSED"));
      },
      done: () => Promise.reject(new Error("ECONNREFUSED")),
    };
    const said = await deliverArtifacts("run-1", dir, { maxBytes: 1024, sink });
    ok((tries.get("f0") ?? 0) > 1, "the first file is tried again");
    // Past the retry time of the outage (f0 and f1 took it): each later file is tried once.
    deepEqual([...tries].slice(2).map(([, n]) => n), [1, 1, 1, 1, 1, 1]);
    match(said ?? "", /"f7" not kept: ECONNREFUSED/);
    match(said ?? "", /the refusals could not be reported: ECONNREFUSED$/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
