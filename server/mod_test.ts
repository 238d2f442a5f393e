import { equal, ok } from "node:assert/strict";
import { createLogger } from "../util/log.ts";
import { startServer } from "./mod.ts";
import { makeSlug } from "./_testing.ts";

Deno.test("closing the server answers the requests in flight, then closes the store", async () => {
  const dataDir = await Deno.makeTempDir({ prefix: "oneoff-server-close-" });
  try {
    const server = await startServer({
      http: "127.0.0.1:0",
      dataDir,
      log: createLogger("test", { level: "silent" }),
    });
    const headers = { authorization: `Bearer ${server.newAdminToken}` };
    const api = (method: string, path: string, body?: BodyInit) =>
      fetch(`${server.url}/api${path}`, { method, headers, ...(body ? { body } : {}) });
    await (await api("POST", "/apps", JSON.stringify({ name: "demo" }))).body?.cancel();
    const slug = await makeSlug({ "a.txt": "a" });
    await (await api("POST", "/apps/demo/deploy", slug)).body?.cancel();
    await (await api("POST", "/apps/demo/runs", JSON.stringify({ command: "true" }))).body
      ?.cancel();

    // A long poll (no agent: the run stays pending) is in flight when the server stops.
    const polling = api("GET", "/apps/demo/runs/one-off-1?wait=30");
    await new Promise((resolve) => setTimeout(resolve, 200));
    const started = performance.now();
    await server.close();
    const reply = await polling;
    equal(reply.status, 200, "answered, not cut off");
    equal((await reply.json()).run.state, "pending");
    ok(performance.now() - started < 10_000, "the long poll does not hold the stop for 30 s");
    await fetch(`${server.url}/healthz`).then(
      () => Promise.reject(new Error("still listening")),
      () => {},
    );
    // The store was closed cleanly: a new server opens it and finds it all.
    const again = await startServer({
      http: "127.0.0.1:0",
      dataDir,
      log: createLogger("test", { level: "silent" }),
    });
    try {
      equal((await again.ctx.store.listApps()).map((a) => a.name).join(), "demo");
    } finally {
      await again.close();
    }
  } finally {
    await Deno.remove(dataDir, { recursive: true });
  }
});
