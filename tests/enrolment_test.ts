import { deepEqual, equal, match, ok, rejects } from "node:assert/strict";
import { CREDENTIAL_FILE, JoinRefusedError, startAgent } from "../agent/mod.ts";
import {
  AGENT_CHANNEL_PATH,
  type AgentInfo,
  type AgentMessage,
  type RunInfo,
  type ServerMessage,
} from "../protocol/mod.ts";
import { type RunningServer, startServer } from "../server/mod.ts";
import { makeSlug } from "../server/_testing.ts";
import { createLogger } from "../util/log.ts";

const silent = createLogger("test", { level: "silent" });

interface Fixture extends AsyncDisposable {
  server: RunningServer;
  dir: string;
  logs: string[];
  call<T>(method: string, path: string, body?: unknown): Promise<T>;
  agentOptions(name: string): Parameters<typeof startAgent>[0];
}

/** A server that does not auto-approve, on a temp dir. */
async function fixture(config: Record<string, unknown> = {}): Promise<Fixture> {
  const dir = await Deno.makeTempDir({ prefix: "oneoff-enrolment-" });
  const logs: string[] = [];
  const server = await startServer({
    http: "127.0.0.1:0",
    dataDir: `${dir}/server`,
    log: createLogger("server", { sink: (line) => logs.push(line), level: "info" }),
    config,
  });
  return {
    server,
    dir,
    logs,
    async call<T>(method: string, path: string, body?: unknown): Promise<T> {
      const res = await fetch(`${server.url}/api${path}`, {
        method,
        headers: { authorization: `Bearer ${server.newAdminToken}` },
        ...(body instanceof Uint8Array
          ? { body: body as Uint8Array<ArrayBuffer> }
          : body !== undefined
          ? { body: JSON.stringify(body) }
          : {}),
      });
      const json = await res.json();
      if (!res.ok) throw new Error(`${method} ${path}: ${JSON.stringify(json)}`);
      return json as T;
    },
    agentOptions(name: string) {
      return {
        server: server.url,
        joinToken: server.joinToken,
        name,
        attach: { hostname: "127.0.0.1", port: 0 },
        dataDir: `${dir}/${name}`,
        sandbox: "bwrap" as const,
        maxRuns: 2,
        log: silent,
      };
    },
    async [Symbol.asyncDispose]() {
      await server.close();
      await Deno.remove(dir, { recursive: true });
    },
  };
}

/** Says one hello on a raw channel; resolves with what the server sent until welcome or close. */
async function hello(
  server: { url: string },
  who: { token?: string; credential?: string; name: string },
): Promise<{ received: ServerMessage[]; socket: WebSocket }> {
  const socket = new WebSocket(server.url.replace(/^http/, "ws") + AGENT_CHANNEL_PATH);
  const received: ServerMessage[] = [];
  const { promise: done, resolve } = Promise.withResolvers<void>();
  socket.onmessage = (event) => {
    const msg = JSON.parse(String(event.data)) as ServerMessage;
    received.push(msg);
    if (msg.type === "welcome") resolve();
  };
  socket.onclose = () => resolve();
  await new Promise((opened) => socket.onopen = opened);
  socket.send(JSON.stringify(
    {
      type: "hello",
      ...(who.credential !== undefined
        ? { credential: who.credential }
        : { token: who.token ?? "" }),
      name: who.name,
      version: "test",
      capacity: 4,
      sandbox: "bwrap",
      attach: { host: "127.0.0.1", port: 5000, tls: false },
      running: [],
      ended: [],
      warnings: [],
    } satisfies AgentMessage,
  ));
  await done;
  return { received, socket };
}

async function closeSocket(socket: WebSocket): Promise<void> {
  if (socket.readyState === WebSocket.CLOSED) return;
  const closed = new Promise((resolve) => socket.onclose = resolve);
  socket.close();
  await closed;
}

async function deployDemo(f: Fixture): Promise<void> {
  await f.call("POST", "/apps", { name: "demo" });
  await f.call("POST", "/apps/demo/deploy", await makeSlug({ "a.txt": "a" }));
}

async function agentsList(f: Fixture): Promise<AgentInfo[]> {
  return (await f.call<{ agents: AgentInfo[] }>("GET", "/agents")).agents;
}

Deno.test("an enrolled agent is pending and gets no run until approved; then the run is placed", async () => {
  await using f = await fixture();
  await deployDemo(f);
  const agent = await startAgent(f.agentOptions("vm-1"));
  try {
    const file = `${f.dir}/vm-1/${CREDENTIAL_FILE}`;
    equal((await Deno.stat(file)).mode! & 0o777, 0o600);
    deepEqual((await agentsList(f)).map((a) => [a.name, a.state, a.trust]), [
      ["vm-1", "online", "pending"],
    ]);
    const { run } = await f.call<{ run: RunInfo }>("POST", "/apps/demo/runs", {
      command: "echo placed",
    });
    // Creation schedules at once: the only connected agent is pending.
    equal(run.state, "pending");
    equal(
      (await f.call<{ run: RunInfo }>("GET", `/apps/demo/runs/${run.label}`)).run.state,
      "pending",
    );

    const approved = await f.call<{ agent: AgentInfo }>("POST", "/agents/vm-1/approve", {});
    equal(approved.agent.trust, "approved");
    const ended = await f.call<{ run: RunInfo }>("GET", `/apps/demo/runs/${run.label}?wait=30`);
    deepEqual([ended.run.state, ended.run.agent], ["exited", "vm-1"]);
    const events = await f.server.ctx.store.listEvents({});
    ok(events.some((e) => e.kind === "agent.approved" && e.actor === "admin"));
  } finally {
    await agent.close();
  }
});

Deno.test("a rogue agent with a copied join token cannot take an enrolled name; the connected one stays", async () => {
  await using f = await fixture();
  await deployDemo(f);
  const agent = await startAgent(f.agentOptions("vm-1"));
  try {
    await f.call("POST", "/agents/vm-1/approve", {});
    const rogue = await hello(f.server, { token: f.server.joinToken, name: "vm-1" });
    deepEqual(rogue.received, [{
      type: "refused",
      reason: 'An agent named "vm-1" is already enrolled: revoke it first or choose another --name',
    }]);
    await closeSocket(rogue.socket);
    // Under a name of its own, it is only pending: it gets no run.
    const other = await hello(f.server, { token: f.server.joinToken, name: "rogue" });
    deepEqual(other.received.map((m) => m.type), ["enrolled", "welcome"]);
    const { run } = await f.call<{ run: RunInfo }>("POST", "/apps/demo/runs", {
      command: "echo still-mine",
    });
    const ended = await f.call<{ run: RunInfo }>("GET", `/apps/demo/runs/${run.label}?wait=30`);
    deepEqual([ended.run.state, ended.run.agent], ["exited", "vm-1"]);
    ok(!other.received.some((m) => m.type === "start_run"), "the pending agent got no run");
    deepEqual((await agentsList(f)).map((a) => [a.name, a.state, a.trust]), [
      ["rogue", "online", "pending"],
      ["vm-1", "online", "approved"],
    ]);
    await closeSocket(other.socket);
  } finally {
    await agent.close();
  }
});

Deno.test("an agent restarted without the join token reconnects with its credential file", async () => {
  await using f = await fixture({ autoApprove: true });
  const first = await startAgent(f.agentOptions("vm-1"));
  await first.close();
  const { joinToken: _, ...noToken } = f.agentOptions("vm-1");
  const again = await startAgent(noToken);
  try {
    deepEqual((await agentsList(f)).map((a) => [a.name, a.state, a.trust]), [
      ["vm-1", "online", "approved"],
    ]);
  } finally {
    await again.close();
  }
  await rejects(
    () => startAgent({ ...noToken, dataDir: `${f.dir}/fresh` }),
    /No credential in .*agent\.credential.*: give --join-token to enrol this agent/,
  );
});

Deno.test("revoke closes the agent's channel; its credential no longer joins or downloads", async () => {
  await using f = await fixture();
  const agent = await startAgent(f.agentOptions("vm-1"));
  try {
    await f.call("POST", "/agents/vm-1/approve", {});
    const credential = (await Deno.readTextFile(`${f.dir}/vm-1/${CREDENTIAL_FILE}`)).trim();
    const blob = (bearer: string) =>
      fetch(`${f.server.url}/agent/blobs/${"0".repeat(64)}`, {
        headers: { authorization: `Bearer ${bearer}` },
      });
    const before = await blob(credential);
    await before.body?.cancel();
    equal(before.status, 404, "an approved credential passes (the blob does not exist)");

    const revoked = await f.call<{ agent: AgentInfo }>("POST", "/agents/vm-1/revoke", {});
    equal(revoked.agent.trust, "revoked");
    await rejects(agent.refused, (err: unknown) =>
      err instanceof JoinRefusedError &&
      err.message === "Server refused this agent: This agent was revoked by an admin");
    const again = await hello(f.server, { credential, name: "vm-1" });
    deepEqual(again.received, [{ type: "refused", reason: "Unknown or revoked agent credential" }]);
    const after = await blob(credential);
    await after.body?.cancel();
    equal(after.status, 401);
    await rejects(
      () => f.call("POST", "/agents/vm-1/approve", {}),
      /must enrol again with the join token/,
    );
    // Revoked, the name may enrol again: pending, with a new credential.
    const back = await hello(f.server, { token: f.server.joinToken, name: "vm-1" });
    deepEqual(back.received.map((m) => m.type), ["enrolled", "welcome"]);
    equal((await agentsList(f))[0]?.trust, "pending");
    await closeSocket(back.socket);
  } finally {
    await agent.close();
  }
});

Deno.test("blob downloads need an approved agent's credential, not the join token", async () => {
  await using f = await fixture();
  const enrolled = await hello(f.server, { token: f.server.joinToken, name: "vm-1" });
  const first = enrolled.received[0];
  ok(first?.type === "enrolled");
  const status = async (bearer: string) => {
    const res = await fetch(`${f.server.url}/agent/blobs/${"0".repeat(64)}`, {
      headers: { authorization: `Bearer ${bearer}` },
    });
    await res.body?.cancel();
    return res.status;
  };
  deepEqual([await status(f.server.joinToken), await status(first.credential)], [401, 401]);
  await f.call("POST", "/agents/vm-1/approve", {});
  equal(await status(first.credential), 404);
  await closeSocket(enrolled.socket);
});

Deno.test("a rotated join token stops enrolling; a limited one enrols only its uses", async () => {
  await using f = await fixture();
  const old = f.server.joinToken;
  const enrolled = await hello(f.server, { token: old, name: "before" });
  const first = enrolled.received[0];
  ok(first?.type === "enrolled");
  await closeSocket(enrolled.socket);

  const rotated = await f.call<{ token: string; uses: number | null }>(
    "POST",
    "/agents/join-token",
    { uses: 1 },
  );
  equal(rotated.uses, 1);
  equal((await Deno.readTextFile(`${f.dir}/server/join.token`)).trim(), rotated.token);
  const refused = await hello(f.server, { token: old, name: "after" });
  deepEqual(refused.received, [{
    type: "refused",
    reason: "Wrong, expired or used-up join token",
  }]);
  const once = await hello(f.server, { token: rotated.token, name: "after" });
  deepEqual(once.received.map((m) => m.type), ["enrolled", "welcome"]);
  const twice = await hello(f.server, { token: rotated.token, name: "third" });
  deepEqual(twice.received, [{ type: "refused", reason: "Wrong, expired or used-up join token" }]);
  // An enrolled agent does not need the join token any more.
  const back = await hello(f.server, { credential: first.credential, name: "before" });
  deepEqual(back.received.map((m) => m.type), ["welcome"]);
  await closeSocket(once.socket);
  await closeSocket(back.socket);
});

Deno.test("join token guesses on the channel are rate-limited and logged with the address, never the token", async () => {
  await using f = await fixture();
  const reasons: string[] = [];
  for (let i = 0; i < 11; i++) {
    const { received } = await hello(f.server, { token: `join_guess-${i}`, name: "guess" });
    reasons.push(received[0]?.type === "refused" ? received[0].reason : "?");
  }
  deepEqual(reasons.slice(0, 10), Array(10).fill("Wrong, expired or used-up join token"));
  match(reasons[10]!, /^Too many failed join attempts from this address/);
  const refusals = f.logs.filter((l) => l.includes("agent join refused"));
  equal(refusals.length, 11);
  ok(refusals.every((l) => l.includes('"address":"127.0.0.1"')), refusals[0]);
  ok(!f.logs.some((l) => l.includes("join_guess")), "no presented token is logged");
  // The valid join token still enrols from that address.
  const valid = await hello(f.server, { token: f.server.joinToken, name: "valid" });
  deepEqual(valid.received.map((m) => m.type), ["enrolled", "welcome"]);
  await closeSocket(valid.socket);
});

Deno.test("an approval or revocation made through another server sharing the store reaches this one within a heartbeat", async () => {
  await using f = await fixture({ heartbeatMs: 200 });
  await deployDemo(f);
  const agent = await startAgent(f.agentOptions("vm-1"));
  try {
    const [row] = await f.server.ctx.store.listAgents();
    const { run } = await f.call<{ run: RunInfo }>("POST", "/apps/demo/runs", {
      command: "echo approved-elsewhere",
    });
    equal(run.state, "pending");
    // What another server's `agents approve` writes: the store only.
    await f.server.ctx.store.setAgentTrust(row!.id, "approved");
    const ended = await f.call<{ run: RunInfo }>("GET", `/apps/demo/runs/${run.label}?wait=30`);
    deepEqual([ended.run.state, ended.run.agent], ["exited", "vm-1"]);
    await f.server.ctx.store.setAgentTrust(row!.id, "revoked");
    await rejects(agent.refused, /This agent was revoked by an admin/);
  } finally {
    await agent.close();
  }
});
