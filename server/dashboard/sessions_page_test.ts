import { deepEqual, equal, match, ok } from "node:assert/strict";
import { CookieClient, dashboardTest } from "./_test_util.ts";
import { recordFakeSession } from "../audit/_fake_sessions.ts";

Deno.test("the sessions page lists recorded sessions and searches them, each hit linking to the replay at its moment", async () => {
  await using d = await dashboardTest();
  const { store, audit } = d.t.ctx;
  const app = await store.createApp("demo");
  await recordFakeSession({ store, audit }, app, { typed: ["ls", "exit"] });
  await recordFakeSession({ store, audit }, app, {
    actor: "carol",
    purpose: "<b>INC-3</b>",
    typed: ["ls", "echo needle-42", "exit"],
  });
  const client = await d.signedIn();
  const page = await client.page("/apps/demo/audit");
  equal(page.status, 200);
  match(page.html, /Recorded sessions/);
  match(page.html, /href="\/apps\/demo\/runs\/one-off-2"/);
  ok(page.html.includes("&lt;b&gt;INC-3&lt;/b&gt;"), "the reason is shown, escaped");

  const refused = await client.post("/apps/demo/audit", { text: "needle-42" });
  equal(refused.status, 403, "a search needs the form's CSRF token");
  const res = await client.post("/apps/demo/audit", {
    _csrf: CookieClient.csrfOf(page.html),
    text: "needle-42",
  });
  equal(res.status, 200);
  const html = await res.text();
  match(html, /2 hits in 1 of 2 sessions/);
  const links = [...html.matchAll(/href="(\/apps\/demo\/runs\/one-off-2\?t=[\d.]+)" data-hit/g)]
    .map((m) => m[1]!);
  equal(links.length, 2, html);
  const replay = await client.page(links[0]!);
  const t = Number(new URL(links[0]!, "http://x").searchParams.get("t"));
  ok(t > 0);
  match(replay.html, new RegExp(`data-start="${t}"`));
  const [event] = await store.listEvents({ app_id: app.id, limit: 1 });
  deepEqual([event?.kind, JSON.stringify(event?.data).includes("needle")], [
    "audit.searched",
    false,
  ]);
});

Deno.test("a member of another app can neither see nor search an app's sessions on the dashboard", async () => {
  await using d = await dashboardTest();
  const { store, audit } = d.t.ctx;
  const app = await store.createApp("demo");
  await store.createApp("other");
  await recordFakeSession({ store, audit }, app, { typed: ["echo needle-7"] });
  const client = await d.signedIn(await d.token("member", ["other"]));
  const own = await client.page("/apps/other/audit");
  equal(own.status, 200);
  equal((await client.page("/apps/demo/audit")).status, 403);
  const res = await client.post("/apps/demo/audit", {
    _csrf: CookieClient.csrfOf(own.html),
    text: "needle-7",
  });
  equal(res.status, 403);
  ok(!(await res.text()).includes("needle-7 "));
});
