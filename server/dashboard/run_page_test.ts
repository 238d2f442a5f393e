import { deepEqual, match, ok } from "node:assert/strict";
import { CookieClient, dashboardTest, seedApp, seedRun } from "./_test_util.ts";

Deno.test("a detached run's page shows its details and its own output", async () => {
  await using d = await dashboardTest();
  const { store } = d.t.ctx;
  const { app, release } = await seedApp(store, "demo");
  const run = await seedRun(store, app, release, "./bin/hello", {
    env: { SECRET_TOKEN: "s3cr3t-value" },
  });
  await store.updateRun(run.id, ["pending"], {
    state: "exited",
    exit_code: 0,
    started_at: new Date(),
    ended_at: new Date(),
  });
  await store.appendLogs(app.id, [
    {
      run_id: run.id,
      seq: 1,
      ts: new Date(),
      source: "one-off-1",
      stream: "stdout",
      line: "hello from one-off-1",
    },
    {
      run_id: "other",
      seq: 1,
      ts: new Date(),
      source: "one-off-2",
      stream: "stdout",
      line: "not this run",
    },
  ]);
  const { status, html } = await (await d.signedIn()).page("/apps/demo/runs/one-off-1");
  deepEqual(status, 200);
  match(html, /<code class="cmd">.\/bin\/hello<\/code>/);
  match(html, /hello from one-off-1/);
  ok(!html.includes("not this run"));
  match(html, /SECRET_TOKEN/);
  ok(!html.includes("s3cr3t-value"), "an override's value leaked");
  ok(!html.includes("data-follow="), "an ended run is not followed");
  ok(!html.includes(">Stop<"), "no stop button on an ended run");
  deepEqual((await (await d.signedIn()).page(`/apps/demo/runs/${run.id}`)).status, 200);
});

Deno.test("an ended attached run's page sets up the replay of its recording", async () => {
  await using d = await dashboardTest();
  const { store } = d.t.ctx;
  const { app, release } = await seedApp(store, "demo");
  const run = await seedRun(store, app, release, "bash", { attached: true });
  await store.updateRun(run.id, ["pending"], {
    state: "exited",
    exit_code: 0,
    started_at: new Date(),
    ended_at: new Date(),
  });
  const { html } = await (await d.signedIn()).page("/apps/demo/runs/one-off-1");
  match(html, /Session replay/);
  match(
    html,
    /data-replay="true" data-cast="\/api\/apps\/demo\/runs\/one-off-1\/audit.cast"/,
  );
  match(
    html,
    /href="\/api\/apps\/demo\/runs\/one-off-1\/audit.cast" download="demo-one-off-1.cast"/,
  );
  match(html, /<script src="\/assets\/player.js\?v=[0-9a-f]+"><\/script>/);
  match(html, /data-rate="2"/);
  match(html, /<dt>Idle timeout<\/dt><dd>45 min<\/dd>/);
});

Deno.test("a running attached run's page plays it live from the watch API; pending, it waits for its user", async () => {
  await using d = await dashboardTest();
  const { store } = d.t.ctx;
  const { app, release } = await seedApp(store, "demo");
  const run = await seedRun(store, app, release, "bash", { attached: true });
  const pending = await (await d.signedIn()).page("/apps/demo/runs/one-off-1");
  match(pending.html, /waiting for its user to attach/);
  await store.updateRun(run.id, ["pending"], { state: "running", started_at: new Date() });
  const { html } = await (await d.signedIn()).page("/apps/demo/runs/one-off-1");
  match(html, /Session, live/);
  match(html, /data-live="\/api\/apps\/demo\/runs\/one-off-1\/watch\?format=sse"/);
  match(html, /<script src="\/assets\/player.js\?v=[0-9a-f]+"><\/script>/);
  ok(!html.includes("data-cast="), "no replay while it runs");
  const events = await store.listEvents({ limit: 10 });
  ok(
    !events.some((e) => e.kind === "run.watch_started"),
    "the page alone is no watch: its player is",
  );
});

Deno.test("an attached run that never started says there is nothing to replay", async () => {
  await using d = await dashboardTest();
  const { store } = d.t.ctx;
  const { app, release } = await seedApp(store, "demo");
  const run = await seedRun(store, app, release, "bash", { attached: true });
  await store.updateRun(run.id, ["pending"], {
    state: "expired",
    reason: "Nobody attached in time",
    ended_at: new Date(),
  });
  const { html } = await (await d.signedIn()).page("/apps/demo/runs/one-off-1");
  match(html, /never started: nothing was recorded/);
  match(html, /Nobody attached in time/);
});

Deno.test("the stop button stops a live run, only with the CSRF token", async () => {
  await using d = await dashboardTest();
  const { store } = d.t.ctx;
  const { app, release } = await seedApp(store, "demo");
  const run = await seedRun(store, app, release, "sleep 100");
  const client = await d.signedIn();
  const page = await client.page("/apps/demo/runs/one-off-1");
  match(page.html, /action="\/apps\/demo\/runs\/one-off-1\/stop"/);
  const refused = await client.post("/apps/demo/runs/one-off-1/stop", {});
  deepEqual(refused.status, 403);
  deepEqual((await store.runById(run.id))?.state, "pending");
  const res = await client.post("/apps/demo/runs/one-off-1/stop", {
    _csrf: CookieClient.csrfOf(page.html),
  });
  deepEqual([res.status, res.headers.get("location")], [303, "/apps/demo/runs/one-off-1"]);
  deepEqual((await store.runById(run.id))?.state, "stopped");
  const [stop] = await store.listEvents({ app_id: app.id, limit: 10 }).then((e) =>
    e.filter((x) => x.kind === "run.stop")
  );
  deepEqual(stop?.actor, "admin");
});

Deno.test("an unknown run is a 404 page", async () => {
  await using d = await dashboardTest();
  await seedApp(d.t.ctx.store, "demo");
  const page = await (await d.signedIn()).page("/apps/demo/runs/one-off-9");
  deepEqual(page.status, 404);
  match(page.html, /No run &quot;one-off-9&quot; in app &quot;demo&quot;/);
});

Deno.test("a run's reason shows on its page and its timeline, escaped", async () => {
  await using d = await dashboardTest();
  const { store } = d.t.ctx;
  const { app, release } = await seedApp(store, "demo");
  const reason = `<script>alert("x")</script> INC-9`;
  const run = await seedRun(store, app, release, "bash", { purpose: reason });
  await store.addEvent({
    app_id: app.id,
    app_name: app.name,
    actor: "admin",
    kind: "run.created",
    data: {
      run: "one-off-1",
      command: run.command,
      attached: false,
      size: "M",
      env_keys: [],
      reason,
    },
  });
  const client = await d.signedIn();
  const escaped = "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; INC-9";
  for (const path of ["/apps/demo/runs/one-off-1", "/apps/demo/timeline"]) {
    const { status, html } = await client.page(path);
    deepEqual(status, 200);
    ok(!html.includes("<script>alert"), `the reason is not markup on ${path}`);
    ok(html.includes(escaped), `the reason is shown on ${path}`);
  }
  match((await client.page("/apps/demo/runs/one-off-1")).html, /<dt>Reason given<\/dt>/);
});

Deno.test("a run's page lists its artifacts, each kept one a download the session cookie may fetch", async () => {
  await using d = await dashboardTest();
  const { store } = d.t.ctx;
  const { app, release } = await seedApp(store, "demo");
  const run = await seedRun(store, app, release, "./bin/report");
  const blob = await d.t.ctx.blobs.put(new Blob(["a,b\n1,2\n"]).stream(), { maxBytes: 1024 });
  const at = new Date();
  await store.putArtifact({
    run_id: run.id,
    name: "report.csv",
    sha256: blob.sha256,
    size: blob.size,
    refused: null,
    created_at: at,
  });
  await store.putArtifact({
    run_id: run.id,
    name: '"p"',
    sha256: null,
    size: 0,
    refused: "a symbolic link: links are never followed",
    created_at: at,
  });
  const client = await d.signedIn();
  const { status, html } = await client.page("/apps/demo/runs/one-off-1");
  deepEqual(status, 200);
  match(html, /href="\/api\/apps\/demo\/runs\/one-off-1\/artifacts\/report.csv"/);
  match(html, /refused: a symbolic link: links are never followed/);
  // The same cookie on the whole server, where the API is.
  const api = new CookieClient(d.t.server.app);
  for (const [name, value] of client.cookies) api.cookies.set(name, value);
  const res = await api.request("/api/apps/demo/runs/one-off-1/artifacts/report.csv");
  deepEqual([res.status, await res.text()], [200, "a,b\n1,2\n"]);
  match(res.headers.get("content-disposition") ?? "", /^attachment; filename\*=UTF-8''report.csv$/);
});
