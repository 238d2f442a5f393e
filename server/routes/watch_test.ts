import { deepEqual, equal, match, ok } from "node:assert/strict";
import { decodeWatchLine, type WatchLine } from "../../protocol/mod.ts";
import { type TestServer, testServer } from "../_testing.ts";
import { newToken, sha256Hex } from "../auth.ts";
import { auditKey, runKey } from "../signals.ts";
import type { RunRow } from "../store/mod.ts";

const T0 = Date.UTC(2030, 0, 2, 3, 4, 5);
const b64 = (s: string) => new TextEncoder().encode(s).toBase64();

async function runningRun(t: TestServer, attached = true, start = true): Promise<RunRow> {
  const { store } = t.ctx;
  const app = await store.appByName("demo") ?? await store.createApp("demo");
  const release = await store.createRelease({
    app_id: app.id,
    sha256: "cd".repeat(32),
    size: 1,
    process_types: {},
    actor: "admin",
  });
  const run = await store.createRun({
    id: crypto.randomUUID(),
    app_id: app.id,
    command: "bash",
    attached,
    tty: true,
    size: "M",
    release_id: release.id,
    env_overrides: {},
    uploads: [],
    cols: 90,
    rows: 20,
    timeout_ms: 60_000,
    actor: "admin",
    secret_sha256: null,
    expires_at: null,
  });
  if (start) {
    await store.updateRun(run.id, ["pending"], { state: "running", started_at: new Date(T0) });
  }
  return run;
}

// As the ingest does: store, then wake the watchers.
async function chunk(t: TestServer, run: RunRow, seq: number, data: object): Promise<void> {
  await t.ctx.audit.receive(run.id, seq, JSON.stringify({ v: 1, t0: T0, ...data }));
  t.ctx.signals.notify(auditKey(run.id));
}

async function end(t: TestServer, run: RunRow): Promise<void> {
  await t.ctx.store.updateRun(run.id, ["running"], {
    state: "exited",
    exit_code: 3,
    ended_at: new Date(),
  });
  t.ctx.signals.notify(runKey(run.id));
}

/** The watch stream's lines, read one at a time. */
function reader(res: Response) {
  const lines = res.body!.pipeThrough(new TextDecoderStream()).getReader();
  let buffered = "";
  return {
    async next(): Promise<WatchLine> {
      while (!buffered.includes("\n")) {
        const { value, done } = await lines.read();
        if (done) throw new Error("The stream ended");
        buffered += value;
      }
      const nl = buffered.indexOf("\n");
      const line = buffered.slice(0, nl);
      buffered = buffered.slice(nl + 1);
      const decoded = decodeWatchLine(line);
      if (!decoded.ok) throw new Error(decoded.error);
      return decoded.value;
    },
    cancel: () => lines.cancel(),
  };
}

Deno.test("a watcher gets the session from its start, then each chunk as it is stored, then the run's end; both ends of the watch are on the timeline", async () => {
  await using t = await testServer();
  const run = await runningRun(t);
  await chunk(t, run, 0, { size: { cols: 90, rows: 20 }, events: [[0, "o", b64("$ ")]] });
  const res = await t.call("GET", "/api/apps/demo/runs/one-off-1/watch");
  equal(res.status, 200);
  equal(res.headers.get("content-type"), "application/x-ndjson");
  const lines = reader(res);
  deepEqual(await lines.next(), {
    type: "start",
    run: "one-off-1",
    cols: 90,
    rows: 20,
    tty: true,
    from: "start",
  });
  deepEqual(await lines.next(), { type: "o", t: 0, data: b64("$ ") });
  await chunk(t, run, 1, { events: [[1500, "i", b64("ls\r")], [1510, "o", b64("ls\r\n")]] });
  deepEqual(await lines.next(), { type: "o", t: 1510, data: b64("ls\r\n") }, "input is not shown");
  await chunk(t, run, 3, { events: [[1600, "r", "100x30"]], final: true });
  deepEqual(await lines.next(), {
    type: "problem",
    message: "Chunk 2 of the recording is missing",
  });
  deepEqual(await lines.next(), { type: "r", t: 1600, cols: 100, rows: 30 });
  await end(t, run);
  deepEqual(await lines.next(), { type: "end", state: "exited", exit_code: 3, reason: null });
  const kinds = async () =>
    (await t.ctx.store.listEvents({ limit: 100 })).map((e) => e.kind).filter((k) =>
      k.startsWith("run.watch")
    );
  let seen: string[] = [];
  for (let i = 0; i < 100 && seen.length < 2; i++) {
    seen = await kinds();
    if (seen.length < 2) await new Promise((resolve) => setTimeout(resolve, 10));
  }
  deepEqual(seen.sort(), ["run.watch_ended", "run.watch_started"]);
});

Deno.test("a watcher from now gets only what is stored after it started", async () => {
  await using t = await testServer();
  const run = await runningRun(t);
  await chunk(t, run, 0, { events: [[0, "o", b64("old")]] });
  const res = await t.call("GET", "/api/apps/demo/runs/one-off-1/watch?from=now");
  const lines = reader(res);
  equal((await lines.next()).type, "start");
  await chunk(t, run, 1, { events: [[10, "o", b64("new")]] });
  deepEqual(await lines.next(), { type: "o", t: 10, data: b64("new") });
  await lines.cancel();
});

Deno.test("the live player's stream is server-sent events: a size, output as text, done at the end", async () => {
  await using t = await testServer();
  const run = await runningRun(t);
  await chunk(t, run, 0, { events: [[250, "o", b64("h\u00e9")]], final: true });
  await end(t, run);
  // The run has ended by now: refused, so the stream is read while it was running.
  const ended = await t.call("GET", "/api/apps/demo/runs/one-off-1/watch?format=sse");
  equal(ended.status, 409);
  const again = await runningRun(t);
  await chunk(t, again, 0, { events: [[250, "o", b64("h\u00e9")]], final: true });
  const res = await t.call("GET", "/api/apps/demo/runs/one-off-2/watch?format=sse");
  equal(res.headers.get("content-type"), "text/event-stream");
  const text = res.body!.pipeThrough(new TextDecoderStream()).getReader();
  let body = "";
  while (!body.includes('data: [0.25,"o","hé"]')) body += (await text.read()).value ?? "";
  ok(body.startsWith('data: {"cols":90,"rows":20}\n\n'), body);
  await end(t, again);
  while (!body.includes("event: done")) body += (await text.read()).value ?? "";
  match(body, /event: done\ndata: \{"type":"end","state":"exited","exit_code":3/);
});

Deno.test("watch is refused to another app's member (403), and for a detached or ended run (409)", async () => {
  await using t = await testServer();
  const { store } = t.ctx;
  await runningRun(t);
  await store.createApp("other");
  const outsider = newToken();
  await store.createToken({
    hash: sha256Hex(outsider),
    role: "member",
    apps: ["other"],
    name: "o",
  });
  const denied = await t.call("GET", "/api/apps/demo/runs/one-off-1/watch", undefined, outsider);
  equal(denied.status, 403);
  equal((await denied.json()).error.code, "forbidden");
  const detached = await runningRun(t, false);
  const res = await t.call("GET", "/api/apps/demo/runs/one-off-2/watch");
  equal(res.status, 409);
  match((await res.json()).error.message, /^Cannot watch one-off-2: it runs detached/);
  await end(t, detached);
  const events = await store.listEvents({ limit: 100 });
  ok(!events.some((e) => e.kind === "run.watch_started"), "a refused watch is not on the timeline");
});

Deno.test("a watcher of a session not started yet waits for it; one that never starts ends the watch", async () => {
  await using t = await testServer();
  const { store, signals } = t.ctx;
  const run = await runningRun(t, true, false);
  const lines = reader(await t.call("GET", "/api/apps/demo/runs/one-off-1/watch"));
  const first = lines.next();
  await store.updateRun(run.id, ["pending"], { state: "running", started_at: new Date(T0) });
  signals.notify(runKey(run.id));
  equal((await first).type, "start");
  await lines.cancel();

  const never = await runningRun(t, true, false);
  const other = reader(await t.call("GET", "/api/apps/demo/runs/one-off-2/watch"));
  const next = other.next();
  await store.updateRun(never.id, ["pending"], {
    state: "expired",
    reason: "Nobody attached within the attach window",
    ended_at: new Date(),
  });
  signals.notify(runKey(never.id));
  deepEqual(await next, {
    type: "end",
    state: "expired",
    exit_code: null,
    reason: "Nobody attached within the attach window",
  });
});
