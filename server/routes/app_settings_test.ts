import { deepEqual, equal, match } from "node:assert/strict";
import { makeSlug, testServer } from "../_testing.ts";
import { engineFixture, FakeAgent, runRequest } from "../_engine_testing.ts";
import { ConnectedAgents } from "../agent_directory.ts";
import { RunEngine } from "../run_engine.ts";
import { REATTACH_GRACE_MS } from "../../protocol/mod.ts";
import { FakeClock } from "../../util/clock.ts";

async function memberToken(t: Awaited<ReturnType<typeof testServer>>, app: string) {
  const res = await t.call("POST", "/api/tokens", { role: "member", apps: [app], name: "bob" });
  return (await res.json()).token as string;
}

async function failure(res: Response): Promise<[number, string, string]> {
  const body = await res.json();
  return [res.status, body.error?.code, body.error?.message];
}

Deno.test("a member of the app sets its idle timeout and reattach grace, shown by GET", async () => {
  await using t = await testServer({ idleTimeoutMs: 30 * 60_000 });
  await t.call("POST", "/api/apps", { name: "demo" });
  const bob = await memberToken(t, "demo");
  const before = (await (await t.call("GET", "/api/apps/demo", undefined, bob)).json()).app;
  deepEqual(before.settings, {
    network: "isolated",
    host_ports: [],
    labels: {},
    idle_timeout_ms: 30 * 60_000,
    idle_timeout_set: false,
    reattach_grace_ms: REATTACH_GRACE_MS,
    reattach_grace_set: false,
    max_idle_timeout_ms: 24 * 3600_000,
    max_reattach_grace_ms: 3600_000,
    require_reason: false,
  });
  const res = await t.call(
    "PATCH",
    "/api/apps/demo",
    { idle_timeout_ms: 3600_000, reattach_grace_ms: 5 * 60_000 },
    bob,
  );
  equal(res.status, 200);
  const { app } = await res.json();
  deepEqual(
    [app.settings.idle_timeout_ms, app.settings.idle_timeout_set, app.settings.reattach_grace_ms],
    [3600_000, true, 5 * 60_000],
  );
  // Back to the server's default.
  const reset = await (await t.call("PATCH", "/api/apps/demo", { idle_timeout_ms: null }, bob))
    .json();
  deepEqual(
    [reset.app.settings.idle_timeout_ms, reset.app.settings.idle_timeout_set],
    [30 * 60_000, false],
  );
  const events = await t.ctx.store.listEvents({ limit: 10 });
  const changes = events.filter((e) => e.kind === "app.settings").reverse().map((e) => [
    e.actor,
    e.data,
  ]);
  deepEqual(changes, [
    ["bob", {
      changes: [
        { setting: "idle-timeout", from: "default (30m)", to: "1h" },
        { setting: "reattach-grace", from: "default (2m)", to: "5m" },
      ],
    }],
    ["bob", { changes: [{ setting: "idle-timeout", from: "1h", to: "default (30m)" }] }],
  ]);
});

Deno.test("a setting above the server's maximum is refused, naming the maximum", async () => {
  await using t = await testServer({ maxIdleTimeoutMs: 2 * 3600_000 });
  await t.call("POST", "/api/apps", { name: "demo" });
  const [status, code, message] = await failure(
    await t.call("PATCH", "/api/apps/demo", { idle_timeout_ms: 3 * 3600_000 }),
  );
  deepEqual([status, code], [422, "setting_too_long"]);
  equal(
    message,
    "Cannot set the idle timeout to 3h: this server's maximum is 2h (its --max-idle-timeout)",
  );
  const grace = await failure(
    await t.call("PATCH", "/api/apps/demo", { reattach_grace_ms: 2 * 3600_000 }),
  );
  match(grace[2], /maximum is 1h \(its --max-reattach-grace\)/);
  const app = await t.ctx.store.appByName("demo");
  deepEqual([app?.idle_timeout_ms, app?.reattach_grace_ms], [null, null], "nothing changed");
  // A setting made under a higher maximum applies only up to the one now.
  await t.ctx.store.updateAppSettings(app!.id, { idle_timeout_ms: 10 * 3600_000 });
  const shown = (await (await t.call("GET", "/api/apps/demo")).json()).app.settings;
  deepEqual([shown.idle_timeout_ms, shown.idle_timeout_set], [2 * 3600_000, true]);
});

Deno.test("only an admin sets the network and host ports, and a member is told why", async () => {
  await using t = await testServer();
  await t.call("POST", "/api/apps", { name: "demo" });
  const bob = await memberToken(t, "demo");
  const [status, code, message] = await failure(
    await t.call("PATCH", "/api/apps/demo", { network: "host", idle_timeout_ms: 60_000 }, bob),
  );
  deepEqual([status, code], [403, "forbidden"]);
  match(message, /^Cannot set --network of "demo": only an admin may, since they decide/);
  match(
    (await failure(await t.call("PATCH", "/api/apps/demo", { host_ports: [5432] }, bob)))[2],
    /--host-ports/,
  );
  equal((await t.ctx.store.appByName("demo"))?.idle_timeout_ms, null, "nothing of it applied");

  const ports = await (await t.call("PATCH", "/api/apps/demo", { host_ports: [6379, 5432] }))
    .json();
  deepEqual(ports.app.settings.host_ports, [5432, 6379]);
  // Host ports need the isolated network: leaving it drops them.
  const refused = await failure(
    await t.call("PATCH", "/api/apps/demo", { network: "host", host_ports: [5432] }),
  );
  deepEqual(refused.slice(0, 2), [422, "invalid"]);
  match(refused[2], /forwarded only into an "isolated" one/);
  const host = await (await t.call("PATCH", "/api/apps/demo", { network: "host" })).json();
  deepEqual([host.app.settings.network, host.app.settings.host_ports], ["host", []]);
  const [last] = await t.ctx.store.listEvents({ limit: 1 });
  deepEqual([last?.actor, last?.data], ["admin", {
    changes: [
      { setting: "network", from: "isolated", to: "host" },
      { setting: "host-ports", from: "5432,6379", to: "none" },
    ],
  }]);
});

Deno.test("a settings body with nothing to change or bad values is refused", async () => {
  await using t = await testServer();
  await t.call("POST", "/api/apps", { name: "demo" });
  for (
    const [body, pattern] of [
      [{}, /Nothing to change/],
      [{ network: "bridge" }, /Unknown network "bridge": use one of isolated, host, none/],
      [{ host_ports: [0] }, /must be a TCP port/],
      [{ idle_timeout_ms: 10 }, /must be at least 1000/],
      [{ idle_timeout_ms: "1h" }, /must be an integer/],
    ] as const
  ) {
    const [status, , message] = await failure(await t.call("PATCH", "/api/apps/demo", body));
    equal(status, 422, JSON.stringify(body));
    match(message, pattern);
  }
});

Deno.test("a run gets its app's idle timeout, reattach grace and host ports, and keeps its timeout", async () => {
  await using f = await engineFixture({ idleTimeoutMs: 30 * 60_000 });
  const clock = new FakeClock(Date.now());
  const agents = new ConnectedAgents();
  const engine = new RunEngine(f.ctx, { agents, clock });
  using _closed = { [Symbol.dispose]: () => engine.close() };
  const agent = new FakeAgent("a1");
  agents.add(agent);
  const app = (await f.ctx.store.updateAppSettings(f.app.id, {
    idle_timeout_ms: 90_000,
    reattach_grace_ms: 10_000,
    host_ports: [5432],
  }))!;
  const attached = await engine.create(app, f.release, runRequest({ attached: true }), "alice");
  const detached = await engine.create(app, f.release, runRequest(), "alice");
  equal(attached.run.idle_timeout_ms, 90_000);
  equal(detached.run.idle_timeout_ms, null);
  const [spec] = agent.started();
  deepEqual(
    [spec?.idleTimeoutMs, spec?.reattachGraceMs, spec?.hostPorts, spec?.network],
    [90_000, 10_000, [5432], "isolated"],
  );
  // A later change applies to the next runs, not to one already made.
  const changed = (await f.ctx.store.updateAppSettings(f.app.id, { idle_timeout_ms: null }))!;
  equal((await f.ctx.store.runById(attached.run.id))?.idle_timeout_ms, 90_000);
  const next = await engine.create(changed, f.release, runRequest({ attached: true }), "alice");
  equal(next.run.idle_timeout_ms, 30 * 60_000);
});

Deno.test("an app's labels send its runs only to agents with them, refused when none has them", async () => {
  await using t = await testServer();
  await t.call("POST", "/api/apps", { name: "demo" });
  const slug = await makeSlug({ "Procfile": "web: true\n" });
  equal((await t.call("POST", "/api/apps/demo/deploy", slug)).status, 201);
  const bob = await memberToken(t, "demo");
  const [status, , message] = await failure(
    await t.call("PATCH", "/api/apps/demo", { labels: { region: "eu" } }, bob),
  );
  equal(status, 403);
  match(message, /Cannot set --labels of "demo": only an admin may/);
  const set = await (await t.call("PATCH", "/api/apps/demo", { labels: { region: "eu" } })).json();
  deepEqual(set.app.settings.labels, { region: "eu" });
  const [last] = await t.ctx.store.listEvents({ limit: 1 });
  deepEqual(last?.data, { changes: [{ setting: "labels", from: "none", to: "region=eu" }] });

  const { store } = t.ctx;
  const agent = (labels: Record<string, string>, name: string) =>
    store.upsertAgent({
      name,
      online: false,
      since: new Date(),
      version: "test",
      capacity: 1,
      sandbox: "bwrap",
      attach_host: "127.0.0.1",
      attach_port: 5000,
      attach_tls: false,
      tls_fingerprint: null,
      warnings: [],
      labels,
    });
  const us = await agent({ region: "us" }, "us-1");
  await store.setAgentTrust(us.id, "approved");
  const eu = await agent({ region: "eu", disk: "ssd" }, "eu-1"); // pending: not enough
  const refused = await failure(
    await t.call("POST", "/api/apps/demo/runs", { command: "true", fail_fast: true }),
  );
  deepEqual(refused.slice(0, 2), [422, "no_matching_agent"]);
  equal(
    refused[2],
    'Cannot start a one-off of "demo": no approved agent has the labels it requires (region=eu); ' +
      "start one with oneoff agent --labels region=eu, or change them with oneoff apps set demo --labels",
  );
  await store.setAgentTrust(eu.id, "approved");
  const started = await t.call("POST", "/api/apps/demo/runs", { command: "true" });
  equal(started.status, 201, "an approved agent with the labels exists: the run waits for it");
});

Deno.test("a labelled app's run is placed on an agent with its labels, not on a freer one", async () => {
  await using f = await engineFixture();
  const clock = new FakeClock(Date.now());
  const agents = new ConnectedAgents();
  const engine = new RunEngine(f.ctx, { agents, clock });
  using _closed = { [Symbol.dispose]: () => engine.close() };
  const free = new FakeAgent("free", { capacity: 8 });
  const eu = Object.assign(new FakeAgent("eu", { capacity: 1, running: [] }), {
    labels: { region: "eu" },
  });
  agents.add(free);
  agents.add(eu);
  const app = (await f.ctx.store.updateAppSettings(f.app.id, { labels: { region: "eu" } }))!;
  const first = await engine.create(app, f.release, runRequest(), "alice");
  equal(first.run.agent_id, "eu");
  const second = await engine.create(app, f.release, runRequest(), "alice");
  equal(second.run.state, "pending", "the agent with the labels is full: it waits");
  deepEqual(free.started(), []);
  const other = await f.ctx.store.createApp("other");
  const any = await engine.create(other, f.release, runRequest(), "alice");
  equal(any.run.agent_id, "free", "an app without labels goes anywhere");
});
