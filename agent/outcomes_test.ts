import { deepEqual, equal, ok } from "node:assert/strict";
import type { AgentMessage } from "../protocol/mod.ts";
import { FakeClock } from "../util/clock.ts";
import { INTERRUPTED_REASON, Outcomes } from "./outcomes.ts";

async function withDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "oneoff-outcomes-test-" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

type RunState = Extract<AgentMessage, { type: "run_state" }>;

Deno.test("a run's end is on disk before it is sent, is sent again until acknowledged, then forgotten", async () => {
  await withDir(async (dir) => {
    const clock = new FakeClock();
    const sent: { at: number; onDisk: boolean }[] = [];
    const { outcomes } = await Outcomes.open(dir, {
      clock,
      resendMs: 1000,
      send: (msg) => {
        if (msg.type === "run_state") {
          const onDisk = Deno.statSync(`${dir}/ended/${msg.runId}.json`).isFile;
          sent.push({ at: clock.now(), onDisk });
        }
        return true;
      },
    });
    const t0 = clock.now();
    outcomes.started("run-1");
    outcomes.ended({ runId: "run-1", state: "exited", exitCode: 0, at: t0, lines: 3 });
    await clock.advance(3500);
    deepEqual(sent.map((s) => s.at - t0), [0, 1000, 3000]);
    ok(sent.every((s) => s.onDisk));
    deepEqual(outcomes.pending().map((e) => e.runId), ["run-1"]);
    outcomes.ack("run-1");
    deepEqual(outcomes.pending(), []);
    deepEqual([...Deno.readDirSync(`${dir}/ended`)], []);
    deepEqual([...Deno.readDirSync(`${dir}/started`)], []);
    await clock.advance(60_000);
    equal(sent.length, 3);
    equal(clock.pending, 0);
  });
});

Deno.test("at the next start, unacknowledged ends are pending again and a started run without one has failed", async () => {
  await withDir(async (dir) => {
    const sent: RunState[] = [];
    const before = await Outcomes.open(dir, { send: () => false });
    before.outcomes.started("ended-1");
    before.outcomes.ended({ runId: "ended-1", state: "exited", exitCode: 0, at: 1, lines: 2 });
    before.outcomes.started("cut-1");
    before.outcomes.close();
    const after = await Outcomes.open(dir, {
      send: (msg) => {
        if (msg.type === "run_state") sent.push(msg);
        return true;
      },
    });
    deepEqual(after.started.sort(), ["cut-1", "ended-1"]);
    deepEqual(after.interrupted, ["cut-1"]);
    const pending = after.outcomes.pending().sort((a, b) => a.runId.localeCompare(b.runId));
    deepEqual(pending.map((e) => [e.runId, e.state, e.reason]), [
      ["cut-1", "failed", INTERRUPTED_REASON],
      ["ended-1", "exited", undefined],
    ]);
    deepEqual(sent.map((m) => m.runId), ["cut-1"], "the new end is sent at once");
    after.outcomes.close();
  });
});
