import { deepEqual, match, throws } from "node:assert/strict";
import { makeSlug, testServer } from "./_testing.ts";
import { MAX_TIMER_MS } from "../protocol/mod.ts";
import { checkTimeouts, runTimeoutMs } from "./run_limits.ts";
import { HttpError } from "./http_error.ts";

const DAY = 24 * 3600_000;

async function errorOf(res: Response): Promise<{ status: number; code: string; message: string }> {
  const body = await res.json();
  return { status: res.status, code: body.error?.code, message: body.error?.message };
}

Deno.test("a run's timeout is its own up to the server's maximum, else a 422 naming it", () => {
  const config = { maxTimeoutMs: DAY, maxDurationMs: DAY };
  deepEqual(runTimeoutMs(config, undefined), DAY);
  deepEqual(runTimeoutMs(config, 90), 90_000);
  deepEqual(runTimeoutMs(config, 86_400), DAY);
  throws(() => runTimeoutMs(config, 86_401), (e: unknown) => {
    deepEqual([(e as HttpError).status, (e as HttpError).code], [422, "timeout_too_long"]);
    match((e as Error).message, /longer than this server's maximum of 24h \(86400s\)/);
    return true;
  });
  // Past a timer's range (2^31 - 1 ms) the run would time out at once.
  throws(() => runTimeoutMs(config, 23 * 86_400), HttpError);
  throws(() => runTimeoutMs(config, 1e12), HttpError);
  deepEqual(runTimeoutMs({ maxTimeoutMs: DAY, maxDurationMs: 2 * DAY }, undefined), DAY);
});

Deno.test("a configured maximum outside a timer's range is refused at start-up", () => {
  checkTimeouts({ maxTimeoutMs: MAX_TIMER_MS, maxDurationMs: DAY });
  throws(() => checkTimeouts({ maxTimeoutMs: MAX_TIMER_MS + 1, maxDurationMs: DAY }), /24.8 days/);
  throws(() => checkTimeouts({ maxTimeoutMs: DAY, maxDurationMs: 30 * DAY }), /maxDurationMs/);
});

Deno.test("POST runs with --timeout over the maximum is a 422; within it the run keeps it", async () => {
  await using t = await testServer({ maxTimeoutMs: 2 * 3600_000 });
  await t.call("POST", "/api/apps", { name: "demo" });
  const deployed = await t.call("POST", "/api/apps/demo/deploy", await makeSlug({ a: "a" }));
  deepEqual(deployed.status, 201);
  await deployed.body?.cancel();
  for (const timeout of [23 * 86_400, 2 ** 31, 1e15, 7201]) {
    const err = await errorOf(
      await t.call("POST", "/api/apps/demo/runs", { command: "true", timeout }),
    );
    deepEqual([err.status, err.code], [422, "timeout_too_long"], String(timeout));
    match(err.message, /maximum of 2h/);
  }
  const res = await t.call("POST", "/api/apps/demo/runs", { command: "true", timeout: 7200 });
  deepEqual(res.status, 201);
  const { run } = await res.json();
  const row = await t.ctx.store.runById(run.id);
  deepEqual(row?.timeout_ms, 7200_000);
});
