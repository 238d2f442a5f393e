import { deepEqual, equal } from "node:assert/strict";
import { AGENT_CHANNEL_PATH, type AgentMessage, type ServerMessage } from "../protocol/mod.ts";
import { FakeClock } from "../util/clock.ts";
import { engineFixture, runRequest } from "./_engine_testing.ts";
import { createApp } from "./app.ts";

/** Polls `check` on the real clock; for effects of socket events, which take real time. */
async function until(what: string, check: () => Promise<boolean>): Promise<void> {
  for (let i = 0; i < 500; i++) {
    if (await check()) return;
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  throw new Error(`Timed out waiting until ${what}`);
}

Deno.test("an agent that misses its heartbeats is dropped, and its run is lost after the grace", async () => {
  await using f = await engineFixture({ agentGraceMs: 30_000 });
  const clock = new FakeClock(Date.now());
  const server = createApp(f.ctx, { clock });
  const http = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen() {} },
    server.app.fetch,
  );
  const received: ServerMessage[] = [];
  const socket = new WebSocket(`ws://127.0.0.1:${http.addr.port}${AGENT_CHANNEL_PATH}`);
  let closed: CloseEvent | undefined;
  socket.onclose = (event) => closed = event;
  socket.onmessage = (event) => received.push(JSON.parse(String(event.data)));
  const send = (msg: AgentMessage) => socket.send(JSON.stringify(msg));
  try {
    await new Promise((resolve) => socket.onopen = resolve);
    send({
      type: "hello",
      token: "join_test",
      name: "a1",
      version: "test",
      capacity: 2,
      sandbox: "bwrap",
      attach: { host: "127.0.0.1", port: 5000, tls: false },
      running: [],
      ended: [],
      warnings: [],
    });
    await until("welcomed", () => Promise.resolve(received.some((m) => m.type === "welcome")));
    deepEqual(received.map((m) => m.type), ["enrolled", "welcome"]);

    const { run } = await server.engine.create(f.app, f.release, runRequest(), "alice");
    await until("asked to start", () => Promise.resolve(received.at(-1)?.type === "start_run"));
    send({ type: "run_state", runId: run.id, state: "running", at: clock.now() });
    const stateOf = async () => (await f.ctx.store.runById(run.id))?.state;
    await until("running", async () => await stateOf() === "running");

    await clock.advance(15_000);
    equal(socket.readyState, WebSocket.OPEN, "three heartbeats may be missed");
    await clock.advance(5_000);
    await until("closed", () => Promise.resolve(closed !== undefined));
    deepEqual([closed?.code, closed?.reason], [1001, "missed heartbeats"]);
    const agentId = run.agent_id ?? "";
    await until("offline", async () => (await f.ctx.store.agentById(agentId))?.online === false);

    await clock.advance(29_000);
    equal(await stateOf(), "running", "its agent may come back");
    await clock.advance(2_000);
    equal(await stateOf(), "lost");
  } finally {
    socket.close();
    server.close();
    await http.shutdown();
  }
});

// An agent in a process of its own: says hello, reports every run it is
// asked to start as running, and prints each message it gets.
const CHILD_AGENT = `
const ws = new WebSocket(Deno.args[0]);
ws.onopen = () => ws.send(JSON.stringify({
  type: "hello", token: "join_test", name: "frozen", version: "test", capacity: 2,
  sandbox: "bwrap", attach: { host: "127.0.0.1", port: 5000, tls: false },
  running: [], ended: [], warnings: [],
}));
ws.onmessage = (event) => {
  const msg = JSON.parse(event.data);
  if (msg.type === "start_run") {
    ws.send(JSON.stringify({ type: "run_state", runId: msg.spec.runId, state: "running", at: Date.now() }));
  }
  console.log(msg.type);
};
`;

Deno.test("a frozen agent (SIGSTOP) is dropped when its heartbeats stop, and its grace starts at once", async () => {
  await using f = await engineFixture({ agentGraceMs: 30_000, heartbeatMs: 5_000 });
  const clock = new FakeClock(Date.now());
  const server = createApp(f.ctx, { clock });
  const http = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, server.app.fetch);
  const child = new Deno.Command(Deno.execPath(), {
    args: ["eval", CHILD_AGENT, `ws://127.0.0.1:${http.addr.port}${AGENT_CHANNEL_PATH}`],
    stdout: "piped",
    stderr: "null",
  }).spawn();
  const seen: string[] = [];
  const reading = (async () => {
    const decoder = new TextDecoderStream();
    for await (const chunk of child.stdout.pipeThrough(decoder)) seen.push(...chunk.split("\n"));
  })();
  try {
    await until("welcomed", () => Promise.resolve(seen.includes("welcome")));
    const { run } = await server.engine.create(f.app, f.release, runRequest(), "alice");
    const stateOf = async () => (await f.ctx.store.runById(run.id))?.state;
    await until("running", async () => await stateOf() === "running");
    const agentId = (await f.ctx.store.runById(run.id))?.agent_id ?? "";

    await clock.advance(5_000);
    await until("sent a heartbeat", () => Promise.resolve(seen.includes("heartbeat")));
    Deno.kill(child.pid, "SIGSTOP");
    await clock.advance(20_000);
    await until("offline", async () => (await f.ctx.store.agentById(agentId))?.online === false);
    equal(server.hub.get(agentId), undefined, "no longer a place for runs");
    equal(await stateOf(), "running", "its grace has started");
    await clock.advance(31_000);
    await until("lost", async () => await stateOf() === "lost");
  } finally {
    Deno.kill(child.pid, "SIGCONT");
    child.kill("SIGKILL");
    await child.status;
    await reading;
    server.close();
    await http.shutdown();
  }
});

Deno.test("an approved agent keeps the labels it was approved with, whatever its hello says", async () => {
  await using f = await engineFixture({ autoApprove: false });
  const server = createApp(f.ctx, { clock: new FakeClock(Date.now()) });
  const http = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, server.app.fetch);
  /** Says hello with these labels; resolves with what the server answered before its welcome. */
  const join = async (labels: Record<string, string>, secret: { credential?: string }) => {
    const socket = new WebSocket(`ws://127.0.0.1:${http.addr.port}${AGENT_CHANNEL_PATH}`);
    const received: ServerMessage[] = [];
    socket.onmessage = (event) => received.push(JSON.parse(String(event.data)));
    await new Promise((resolve) => socket.onopen = resolve);
    socket.send(JSON.stringify(
      {
        type: "hello",
        ...(secret.credential ? { credential: secret.credential } : { token: "join_test" }),
        name: "labelled",
        version: "test",
        capacity: 2,
        sandbox: "bwrap",
        attach: { host: "127.0.0.1", port: 5000, tls: false },
        running: [],
        ended: [],
        warnings: [],
        labels,
      } satisfies AgentMessage,
    ));
    await until("welcomed", () => Promise.resolve(received.some((m) => m.type === "welcome")));
    const closed = new Promise((resolve) => socket.onclose = resolve);
    socket.close();
    await closed;
    return received;
  };
  const labelsOf = async () => (await f.ctx.store.listAgents())[0]?.labels;
  try {
    const enrolled = (await join({ region: "eu" }, {})).find((m) => m.type === "enrolled");
    const credential = enrolled?.type === "enrolled" ? enrolled.credential : "";
    deepEqual(await labelsOf(), { region: "eu" });
    // Pending: it may still change them; the admin approves what is shown then.
    await join({ region: "us" }, { credential });
    deepEqual(await labelsOf(), { region: "us" });
    const [row] = await f.ctx.store.listAgents();
    await f.ctx.store.setAgentTrust(row!.id, "approved");
    await join({ region: "eu", secrets: "all" }, { credential });
    deepEqual(await labelsOf(), { region: "us" }, "approved: the approved labels stay");
  } finally {
    server.close();
    await http.shutdown();
  }
});
