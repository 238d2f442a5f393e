import { deepEqual, match, ok } from "node:assert/strict";
import type { TimelineEventBody } from "../../protocol/mod.ts";
import { dashboardTest, seedApp } from "./_test_util.ts";

Deno.test("the timeline tells each change with its actor", async () => {
  await using d = await dashboardTest();
  const { store } = d.t.ctx;
  const { app } = await seedApp(store, "demo");
  const add = (event: TimelineEventBody, actor = "alice") =>
    store.addEvent({ app_id: app.id, app_name: "demo", actor, ...event });
  await add({
    kind: "deploy",
    data: { release: 4, sha256: "0".repeat(64), size: 2048, process_types: ["web"] },
  });
  await add({ kind: "env.set", data: { keys: ["DATABASE_URL"] } });
  await add({
    kind: "run.created",
    data: {
      run: "one-off-7",
      command: "rake db:migrate",
      attached: true,
      size: "L",
      env_keys: ["X"],
    },
  });
  await add({
    kind: "run.ended",
    data: {
      run: "one-off-7",
      command: "rake db:migrate",
      state: "exited",
      exit_code: 1,
      reason: null,
      duration_ms: 61_000,
    },
  }, "bob");
  await add({ kind: "run.stop", data: { run: "one-off-8" } });
  await add({ kind: "audit.viewed", data: { run: "one-off-7", format: "cast" } });
  const { status, html } = await (await d.signedIn()).page("/apps/demo/timeline");
  deepEqual(status, 200);
  const text = html.replace(/<[^>]+>/g, "").replace(/\s+/g, " ");
  match(text, /alice deployed release v4 \(2 KiB\) with process types web/);
  match(text, /alice set DATABASE_URL/);
  match(text, /alice started one-off-7 attached, size L: rake db:migrate with X/);
  match(text, /bob one-off-7 ended exited with exit code 1 after 1 min 1 s: rake db:migrate/);
  match(text, /alice asked one-off-8 to stop/);
  match(text, /alice viewed the session recording of one-off-7 \(cast\)/);
  match(html, /href="\/apps\/demo\/runs\/one-off-7"/);
});

Deno.test("the timeline is paginated 50 events a page, newest first", async () => {
  await using d = await dashboardTest();
  const { store } = d.t.ctx;
  const { app } = await seedApp(store, "demo");
  const ids: number[] = [];
  for (let i = 1; i <= 60; i++) {
    ids.push(
      (await store.addEvent({
        app_id: app.id,
        app_name: "demo",
        actor: "a",
        kind: "env.set",
        data: { keys: [`K${i}`] },
      })).id,
    );
  }
  const client = await d.signedIn();
  const first = await client.page("/apps/demo/timeline");
  const keys = (html: string) =>
    [...html.matchAll(/<code>K(\d+)<\/code>/g)].map((m) => Number(m[1]));
  deepEqual(keys(first.html), Array.from({ length: 50 }, (_, i) => 60 - i));
  const older = /href="(\/apps\/demo\/timeline\?before=\d+)">Older/.exec(first.html)?.[1];
  deepEqual(older, `/apps/demo/timeline?before=${ids[10]}`);
  const second = await client.page(older!);
  deepEqual(keys(second.html), Array.from({ length: 10 }, (_, i) => 10 - i));
  ok(!second.html.includes("Older"));
  match(second.html, /href="\/apps\/demo\/timeline">← Newest/);
});
