import { match } from "node:assert/strict";
import { dashboardTest, seedApp, seedRun } from "./_test_util.ts";

Deno.test("the apps list shows each app's release, live one-offs and last activity", async () => {
  await using d = await dashboardTest();
  const { store } = d.t.ctx;
  const { app, release } = await seedApp(store, "demo");
  await store.createApp("fresh");
  const live = await seedRun(store, app, release, "sleep 100");
  await seedRun(store, app, release, "sleep 100");
  const ended = await seedRun(store, app, release, "true");
  await store.updateRun(live.id, ["pending"], { state: "running", started_at: new Date() });
  await store.updateRun(ended.id, ["pending"], {
    state: "exited",
    exit_code: 0,
    ended_at: new Date(),
  });
  await store.addEvent({
    app_id: app.id,
    app_name: "demo",
    actor: "admin",
    kind: "env.set",
    data: { keys: ["A"] },
  });
  const { html } = await (await d.signedIn()).page("/");
  const text = html.replace(/<[^>]+>/g, " ").replace(/\s+/g, " ");
  match(text, /2 apps you can use/);
  match(text, /demo v1 by admin 2 just now/);
  match(text, /fresh never deployed 0 just now/);
});

Deno.test("with no apps the list says how to make one", async () => {
  await using d = await dashboardTest();
  const { html } = await (await d.signedIn()).page("/");
  match(html, /No apps yet/);
  match(html, /oneoff apps create NAME/);
});
