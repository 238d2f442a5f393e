import { deepEqual, equal, ok, throws } from "node:assert/strict";
import { recoverSpools, RunSpool } from "./spool.ts";

async function withDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "oneoff-spool-test-" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("a spool writes numbered records, reads them back and deletes them on ack", async () => {
  await withDir(async (dir) => {
    const spool = new RunSpool(dir, "run-1");
    spool.write(0, "zero");
    spool.write(1, "one");
    spool.write(2, "two");
    deepEqual(spool.seqs, [0, 1, 2]);
    equal(Deno.readTextFileSync(`${dir}/run-1/1.json`), "one");
    equal(Deno.statSync(`${dir}/run-1/1.json`).mode! & 0o777, 0o600);
    spool.ack(1);
    deepEqual(spool.seqs, [2]);
    equal(await spool.read(0), null);
    equal(await spool.read(2), "two");
    spool.remove();
    ok(Deno.statSync(spool.dir).isDirectory, "a folder with records stays");
    spool.ack(2);
    spool.remove();
    deepEqual([...Deno.readDirSync(dir)], []);
  });
});

Deno.test("recovery lists each run's records in order, keeps whole temp files and drops partial ones", async () => {
  await withDir(async (dir) => {
    await Deno.mkdir(`${dir}/run-a`);
    for (const seq of [10, 2, 1]) {
      await Deno.writeTextFile(`${dir}/run-a/${seq}.json`, `batch ${seq}`);
    }
    await Deno.writeTextFile(`${dir}/run-a/11.json.tmp`, "batch 11");
    await Deno.writeTextFile(`${dir}/run-a/12.json.tmp`, "batch 1");
    await Deno.writeTextFile(`${dir}/run-a/notes.txt`, "not a record");
    await Deno.mkdir(`${dir}/run-empty`);
    const spools = await recoverSpools(dir, { isWhole: (data) => /^batch \d\d$/.test(data) });
    deepEqual(spools.map((s) => [s.runId, s.seqs]), [["run-a", [1, 2, 10, 11]]]);
    equal(await spools[0]!.read(11), "batch 11");
    equal(await Deno.stat(`${dir}/run-a/12.json.tmp`).catch(() => null), null);
    equal(await Deno.stat(`${dir}/run-empty`).catch(() => null), null);
  });
});

Deno.test("a spool refuses a run id that is not a plain folder name", () => {
  throws(() => new RunSpool("/tmp", "../escape"), /not a valid run id/);
});
