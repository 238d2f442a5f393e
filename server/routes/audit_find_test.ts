import { deepEqual, equal, match, ok } from "node:assert/strict";
import { type TestServer, testServer } from "../_testing.ts";
import { recordFakeSession } from "../audit/_fake_sessions.ts";
import type { AuditSearchReply, AuditSessionsReply } from "../../protocol/mod.ts";

async function memberToken(t: TestServer, app: string): Promise<string> {
  const res = await t.call("POST", "/api/tokens", { role: "member", apps: [app], name: "bob" });
  return (await res.json()).token as string;
}

// Every file under the server's data dir, as latin1 text: what an attacker with the disk sees.
async function everyFile(dir: string): Promise<Map<string, string>> {
  const files = new Map<string, string>();
  for await (const entry of Deno.readDir(dir)) {
    const path = `${dir}/${entry.name}`;
    if (entry.isDirectory) { for (const [p, text] of await everyFile(path)) files.set(p, text); }
    else if (entry.isFile) {
      files.set(path, new TextDecoder("latin1").decode(await Deno.readFile(path)));
    }
  }
  return files;
}

Deno.test("a search finds the one marked session among 204 recorded ones, and keeps no text", async () => {
  await using t = await testServer();
  const demo = await t.ctx.store.createApp("demo");
  const ordinary = {
    typed: ["ls -l", "cat report.csv", "exit"],
    output: Array.from({ length: 30 }, (_, i) => `row ${i},alpha,beta,${i * 7},gamma delta`),
  };
  for (let i = 0; i < 200; i++) await recordFakeSession(t.ctx, demo, ordinary);
  const marker = `marker-${crypto.randomUUID()}`;
  const target = await recordFakeSession(t.ctx, demo, {
    actor: "carol",
    purpose: "INC-7",
    typed: ["ls", `echo ${marker} > /tmp/x`, "exit"],
  });
  for (let i = 0; i < 3; i++) await recordFakeSession(t.ctx, demo, ordinary);

  const started = performance.now();
  const res = await t.call("POST", "/api/apps/demo/audit/search", { text: marker });
  const took = performance.now() - started;
  equal(res.status, 200);
  const reply: AuditSearchReply = await res.json();
  console.log(`searched ${reply.searched} sessions in ${Math.round(took)} ms`);
  deepEqual([reply.searched, reply.truncated, reply.more_hits], [204, false, false]);
  equal(reply.results.length, 1, "only the marked session");
  const [found] = reply.results;
  deepEqual(
    [found!.session.id, found!.session.user, found!.session.reason],
    [target.id, "carol", "INC-7"],
  );
  // Typed (input) and echoed (output), each with its line and its time in the session.
  deepEqual(
    found!.hits.map((h) => [h.stream, h.line]),
    [["output", `$ echo ${marker} > /tmp/x`], ["input", `echo ${marker} > /tmp/x`]],
  );
  ok(found!.hits.every((h) => h.t > 0.4 && h.t < 2), JSON.stringify(found!.hits));

  // The search is on the timeline, without its text; nothing on disk holds it in clear.
  const [event] = await t.ctx.store.listEvents({ app_id: demo.id, limit: 1 });
  deepEqual([event?.kind, event?.data], ["audit.searched", {
    sessions: 204,
    hits: 2,
    since_ms: 7 * 86_400_000,
  }]);
  for (const [path, text] of await everyFile(t.dir)) {
    ok(!text.includes(marker), `no plaintext marker in ${path}`);
  }
});

Deno.test("audit sessions lists who ran what and why, newest first, by user and in pages", async () => {
  await using t = await testServer();
  const demo = await t.ctx.store.createApp("demo");
  await recordFakeSession(t.ctx, demo, { actor: "alice", typed: ["ls"] });
  await recordFakeSession(t.ctx, demo, {
    actor: "bob",
    command: "rails console",
    purpose: "fix order 12",
    typed: ["Order.find(12)", "exit"],
  });
  await recordFakeSession(t.ctx, demo, { actor: "alice", typed: ["pwd"] });
  const all: AuditSessionsReply = await (await t.call("GET", "/api/apps/demo/audit/sessions"))
    .json();
  deepEqual(all.sessions.map((s) => [s.run, s.user]), [
    ["one-off-3", "alice"],
    ["one-off-2", "bob"],
    ["one-off-1", "alice"],
  ]);
  const bob = all.sessions[1]!;
  deepEqual(
    [bob.command, bob.reason, bob.state, bob.exit_code, bob.duration_ms! > 0, bob.bytes > 20],
    ["rails console", "fix order 12", "exited", 0, true, true],
  );
  const alice: AuditSessionsReply = await (await t.call(
    "GET",
    "/api/apps/demo/audit/sessions?user=alice&limit=1",
  )).json();
  deepEqual([alice.sessions.map((s) => s.run), alice.next_before], [["one-off-3"], 3]);
  const next: AuditSessionsReply = await (await t.call(
    "GET",
    "/api/apps/demo/audit/sessions?user=alice&limit=1&before=3",
  )).json();
  deepEqual([next.sessions.map((s) => s.run), next.next_before], [["one-off-1"], null]);
  const none: AuditSessionsReply = await (await t.call(
    "GET",
    "/api/apps/demo/audit/sessions?since_ms=1",
  )).json();
  deepEqual(none.sessions, [], "none created in the last millisecond");
});

Deno.test("a member of another app may neither list nor search an app's sessions", async () => {
  await using t = await testServer();
  const demo = await t.ctx.store.createApp("demo");
  await t.ctx.store.createApp("other");
  await recordFakeSession(t.ctx, demo, { typed: ["secret-thing"] });
  const stranger = await memberToken(t, "other");
  const list = await t.call("GET", "/api/apps/demo/audit/sessions", undefined, stranger);
  equal(list.status, 403);
  const search = await t.call(
    "POST",
    "/api/apps/demo/audit/search",
    { text: "secret-thing" },
    stranger,
  );
  equal(search.status, 403);
  const member = await memberToken(t, "demo");
  const own: AuditSearchReply = await (await t.call(
    "POST",
    "/api/apps/demo/audit/search",
    { text: "secret-thing" },
    member,
  )).json();
  equal(own.results.length, 1);
});

Deno.test("a search text that is empty, too long or has control characters is refused without being repeated", async () => {
  await using t = await testServer();
  await t.ctx.store.createApp("demo");
  for (const text of ["", "  ", "s3cr3t".repeat(40), "s3cr3t\x1b[0m", 7]) {
    const res = await t.call("POST", "/api/apps/demo/audit/search", { text });
    equal(res.status, 422, JSON.stringify(text));
    const body = await res.json();
    equal(body.error.code, "invalid_text");
    ok(!body.error.message.includes("s3cr3t"));
    match(body.error.message, /text to search for/i);
  }
});
