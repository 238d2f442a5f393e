import { deepEqual, equal, match } from "node:assert/strict";
import { makeSlug, type TestServer, testServer } from "../_testing.ts";
import { eventText } from "../../protocol/mod.ts";

async function memberToken(t: TestServer, app: string): Promise<string> {
  const res = await t.call("POST", "/api/tokens", { role: "member", apps: [app], name: "bob" });
  return (await res.json()).token as string;
}

async function failure(res: Response): Promise<[number, string, string]> {
  const body = await res.json();
  return [res.status, body.error?.code, body.error?.message];
}

async function demo(t: TestServer): Promise<void> {
  await t.call("POST", "/api/apps", { name: "demo" });
  await t.call("POST", "/api/apps/demo/deploy", await makeSlug({ "a.txt": "a" }));
}

Deno.test("an app that requires a reason refuses a run without one, and keeps the one given", async () => {
  await using t = await testServer();
  await demo(t);
  const bob = await memberToken(t, "demo");
  const on = await t.call("PATCH", "/api/apps/demo", { require_reason: true }, bob);
  equal(on.status, 200, "a member may require a reason");
  equal((await on.json()).app.settings.require_reason, true);

  const [status, code, message] = await failure(
    await t.call("POST", "/api/apps/demo/runs", { command: "true" }, bob),
  );
  deepEqual([status, code], [422, "reason_required"]);
  equal(
    message,
    'Cannot start a one-off of "demo": the app requires a reason for every run; ' +
      'say why with --reason "..."',
  );
  const reason = "INC-42: <script>alert(1)</script> & fix";
  const made = await t.call("POST", "/api/apps/demo/runs", { command: "true", reason }, bob);
  equal(made.status, 201);
  equal((await made.json()).run.purpose, reason);
  const { runs } = await (await t.call("GET", "/api/apps/demo/runs")).json();
  equal(runs[0].purpose, reason);
  const created = (await t.ctx.store.listEvents({ limit: 10 })).find((e) =>
    e.kind === "run.created"
  )!;
  equal((created.data as { reason?: string }).reason, reason);
  equal(
    eventText(created),
    `started one-off-1 detached, size M: true, because: ${reason}`,
  );
});

Deno.test("only an admin stops requiring a reason", async () => {
  await using t = await testServer();
  await demo(t);
  const bob = await memberToken(t, "demo");
  await t.call("PATCH", "/api/apps/demo", { require_reason: true });
  const [status, code, message] = await failure(
    await t.call("PATCH", "/api/apps/demo", { require_reason: false }, bob),
  );
  deepEqual([status, code], [403, "forbidden"]);
  match(message, /^Cannot set --no-require-reason of "demo": only an admin may/);
  const off = await (await t.call("PATCH", "/api/apps/demo", { require_reason: false })).json();
  equal(off.app.settings.require_reason, false);
  const [last] = await t.ctx.store.listEvents({ limit: 1 });
  deepEqual(last?.data, { changes: [{ setting: "require-reason", from: "yes", to: "no" }] });
  equal((await t.call("POST", "/api/apps/demo/runs", { command: "true" })).status, 201);
});

Deno.test("a reason that is empty, too long or holds control characters is refused", async () => {
  await using t = await testServer();
  await demo(t);
  for (
    const [reason, pattern] of [
      ["", /it is empty/],
      ["x".repeat(501), /longer than 500 characters/],
      ["a\nb", /control character/],
      ["\x1b]0;owned\x07", /control character/],
      [42, /must be a string/],
    ] as const
  ) {
    const [status, code, message] = await failure(
      await t.call("POST", "/api/apps/demo/runs", { command: "true", reason }),
    );
    deepEqual([status, code === "invalid_reason" || code === "invalid"], [422, true]);
    match(message, pattern, JSON.stringify(reason));
  }
  const longest = "é".repeat(500);
  const ok = await t.call("POST", "/api/apps/demo/runs", { command: "true", reason: longest });
  equal(ok.status, 201);
});
