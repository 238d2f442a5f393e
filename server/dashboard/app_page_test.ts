import { assert, assertEquals, assertMatch } from "../../tests/_assert.ts";
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
  const ok = await seedRun(store, app, release, "echo <b>hi</b>");
  const bad = await seedRun(store, app, release, "false");
  const started = new Date(Date.now() - 5000);
  await store.updateRun(ok.id, ["pending"], {
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
  assertEquals(status, 200);
  assertEquals(labels(html), [2, 1]);
  assertMatch(html, /<code>echo &lt;b&gt;hi&lt;\/b&gt;<\/code>/);
  assertMatch(html, /class="badge state-exited">exited/);
  assertMatch(html, /class="exit-bad">3</);
  assertMatch(html, /1\.5 s/);
  assertMatch(html, /Release v1 by admin · process types: web, hello/);
  assertMatch(html, /href="\/apps\/demo\/timeline"/);
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
  assertMatch(html, /DATABASE_URL/);
  assertMatch(html, /GREETING/);
  assert(
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
  assertMatch(html, /hello &lt;world&gt;/);
  assertMatch(html, /class="log-line stream-stderr"/);
  assertMatch(
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
  assertEquals(labels(first.html), Array.from({ length: 50 }, (_, i) => 120 - i));
  assertMatch(first.html, /href="\/apps\/demo\?before=71">Older/);
  assert(!first.html.includes("Newer"));
  const second = await client.page("/apps/demo?before=71");
  assertEquals(labels(second.html), Array.from({ length: 50 }, (_, i) => 70 - i));
  assertMatch(second.html, /href="\/apps\/demo\?before=21">Older/);
  assertMatch(second.html, /href="\/apps\/demo">← Newer/);
  const last = await client.page("/apps/demo?before=21");
  assertEquals(labels(last.html), Array.from({ length: 20 }, (_, i) => 20 - i));
  assert(!last.html.includes("Older"));
  assertMatch(last.html, /href="\/apps\/demo\?before=71">← Newer/);
});

Deno.test("an unknown app is a 404 page", async () => {
  await using d = await dashboardTest();
  const page = await (await d.signedIn()).page("/apps/nope");
  assertEquals(page.status, 404);
  assertMatch(page.html, /No app named &quot;nope&quot;/);
});
