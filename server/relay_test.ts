import { deepEqual } from "node:assert/strict";
import { testServer } from "./_testing.ts";

async function errorOf(res: Response): Promise<{ status: number; code: string }> {
  const body = await res.json();
  return { status: res.status, code: body.error?.code };
}

Deno.test("the relay route answers 401, 403 and 404 as JSON before any upgrade", async () => {
  await using t = await testServer();
  await t.call("POST", "/api/apps", { name: "mine" });
  await t.call("POST", "/api/apps", { name: "other" });
  const { token } = await (await t.call("POST", "/api/tokens", {
    role: "member",
    apps: ["mine"],
    name: "dev1",
  })).json();
  const path = (app: string) => `/api/apps/${app}/runs/one-off-1/relay`;
  deepEqual(await errorOf(await t.call("GET", path("mine"), undefined, "oo_wrong")), {
    status: 401,
    code: "unauthorized",
  });
  deepEqual(await errorOf(await t.call("GET", path("other"), undefined, token)), {
    status: 403,
    code: "forbidden",
  });
  deepEqual(await errorOf(await t.call("GET", path("mine"), undefined, token)), {
    status: 404,
    code: "not_found",
  });
  deepEqual(await errorOf(await t.call("GET", path("nope"))), { status: 404, code: "not_found" });
});

Deno.test("an agent's dial-back needs an approved agent's credential and a relay it was asked for", async () => {
  await using t = await testServer();
  const none = await t.server.app.request("/agent/relay/abc");
  deepEqual(await errorOf(none), { status: 401, code: "unauthorized" });
  const wrong = await t.server.app.request("/agent/relay/abc", {
    headers: { authorization: "Bearer not-a-credential" },
  });
  deepEqual(await errorOf(wrong), { status: 401, code: "unauthorized" });
});
