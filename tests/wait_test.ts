import { deepEqual, equal, ok, rejects } from "node:assert/strict";
import { waitFor } from "./_wait.ts";

Deno.test("waitFor resolves with the first truthy value of a sync or async check", async () => {
  let calls = 0;
  equal(await waitFor(() => ++calls >= 3 && "third", { message: "a third call" }), "third");
  equal(calls, 3);
  const run = await waitFor(() => Promise.resolve({ state: "exited" }), { message: "a run" });
  deepEqual(run, { state: "exited" });
});

Deno.test("waitFor gives up at its deadline, saying what it waited for and what it saw", async () => {
  const started = performance.now();
  await rejects(
    waitFor(() => 0, { message: "the count to grow", timeoutMs: 50 }),
    new Error("Timed out after 50ms waiting for the count to grow; last seen: 0"),
  );
  ok(performance.now() - started < 5_000);
  await rejects(
    waitFor(() => false, { message: "a flag", timeoutMs: 10 }),
    new Error("Timed out after 10ms waiting for a flag"),
  );
  await rejects(
    waitFor(() => false, { message: "a line", timeoutMs: 10, seen: () => "partial out" }),
    new Error('Timed out after 10ms waiting for a line; last seen: "partial out"'),
  );
});

Deno.test("waitFor fails at once when the check throws", async () => {
  let calls = 0;
  await rejects(
    waitFor(() => {
      calls++;
      throw new Error("Stream ended");
    }, { message: "output" }),
    /Stream ended/,
  );
  equal(calls, 1);
});
