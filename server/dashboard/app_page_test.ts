import { deepEqual, match, ok } from "node:assert/strict";
import { dashboardTest, seedApp, seedRun } from "./_test_util.ts";

function labels(html: string): number[] {
  return [...html.matchAll(/href="\/apps\/[a-z-]+\/runs\/one-off-(\d+)"/g)].map((m) =>
    Number(m[1])
  );
}

Deno.test("the app page lists runs as ps does, with state, command, exit code and duration", async () => {
  await using d = await dashboardTest();
  const { store } = d.t.ctx;
  const { app, release } = await seedApp(store, "demo");
  const good = await seedRun(store, app, release, "echo <b>hi</b>");
  const bad = await seedRun(store, app, release, "false");
  const started = new Date(Date.now() - 5000);
  await store.updateRun(good.id, ["pending"], {
    state: "exited",
    exit_code: 0,
    started_at: started,
    ended_at: new Date(started.getTime() + 1500),
  });
  await store.updateRun(bad.id, ["pending"], {
    state: "exited",
    exit_code: 3,
    started_at: started,
    ended_at: new Date(),
  });
  const client = await d.signedIn();
  const { status, html } = await client.page("/apps/demo");
  deepEqual(status, 200);
  deepEqual(labels(html), [2, 1]);
  match(html, /<code>echo &lt;b&gt;hi&lt;\/b&gt;<\/code>/);
  match(html, /class="badge state-exited">exited/);
  match(html, /class="exit-bad">3</);
  match(html, /1\.5 s/);
  match(html, /Release v1 by admin · process types: web, hello/);
  match(html, /href="\/apps\/demo\/timeline"/);
});

Deno.test("the app page shows environment keys and never their values", async () => {
  await using d = await dashboardTest();
  const { store } = d.t.ctx;
  const { app } = await seedApp(store, "demo");
  await store.updateEnv(app.id, {
    DATABASE_URL: "postgres://secret-password@db",
    GREETING: "hey-value",
  }, []);
  const { html } = await (await d.signedIn()).page("/apps/demo");
  match(html, /DATABASE_URL/);
  match(html, /GREETING/);
  ok(
    !html.includes("secret-password") && !html.includes("hey-value"),
    "a value leaked into the page",
  );
});

Deno.test("the app page shows recent logs set up to follow new lines", async () => {
  await using d = await dashboardTest();
  const { store } = d.t.ctx;
  const { app } = await seedApp(store, "demo");
  await store.appendLogs(app.id, [
    {
      run_id: "r1",
      seq: 1,
      ts: new Date(),
      source: "one-off-1",
      stream: "stdout",
      line: "hello <world>",
    },
    { run_id: "r1", seq: 2, ts: new Date(), source: "one-off-1", stream: "stderr", line: "oops" },
  ]);
  const lines = await store.readLogs(app.id, {});
  const { html } = await (await d.signedIn()).page("/apps/demo");
  match(html, /hello &lt;world&gt;/);
  match(html, /class="log-line stream-stderr"/);
  match(
    html,
    new RegExp(`data-follow="/api/apps/demo/logs" data-after="${lines.at(-1)!.id}"`),
  );
});

Deno.test("runs are paginated 50 a page with an older/newer cursor", async () => {
  await using d = await dashboardTest();
  const { store } = d.t.ctx;
  const { app, release } = await seedApp(store, "demo");
  for (let i = 0; i < 120; i++) await seedRun(store, app, release, `echo ${i}`);
  const client = await d.signedIn();
  const first = await client.page("/apps/demo");
  deepEqual(labels(first.html), Array.from({ length: 50 }, (_, i) => 120 - i));
  match(first.html, /href="\/apps\/demo\?before=71">Older/);
  ok(!first.html.includes("Newer"));
  const second = await client.page("/apps/demo?before=71");
  deepEqual(labels(second.html), Array.from({ length: 50 }, (_, i) => 70 - i));
  match(second.html, /href="\/apps\/demo\?before=21">Older/);
  match(second.html, /href="\/apps\/demo">← Newer/);
  const last = await client.page("/apps/demo?before=21");
  deepEqual(labels(last.html), Array.from({ length: 20 }, (_, i) => 20 - i));
  ok(!last.html.includes("Older"));
  match(last.html, /href="\/apps\/demo\?before=71">← Newer/);
});

Deno.test("an unknown app is a 404 page", async () => {
  await using d = await dashboardTest();
  const page = await (await d.signedIn()).page("/apps/nope");
  deepEqual(page.status, 404);
  match(page.html, /No app named &quot;nope&quot;/);
});
