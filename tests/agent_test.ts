import { deepEqual, equal, match, ok, rejects } from "node:assert/strict";
import { startAgent } from "../agent/mod.ts";
import { AGENT_CHANNEL_PATH, type AgentInfo, type RunInfo } from "../protocol/mod.ts";
import { startServer } from "../server/mod.ts";
import { makeSlug } from "../server/_testing.ts";
import { createLogger } from "../util/log.ts";
import { waitFor } from "./_wait.ts";

const silent = createLogger("test", { level: "silent" });

async function withServer(
  fn: (s: Awaited<ReturnType<typeof startServer>>, dir: string, logs: string[]) => Promise<void>,
  config = {},
) {
  const dir = await Deno.makeTempDir({ prefix: "oneoff-agent-e2e-" });
  const logs: string[] = [];
  const server = await startServer({
    http: "127.0.0.1:0",
    dataDir: `${dir}/server`,
    log: createLogger("server", { sink: (line) => logs.push(line), level: "info" }),
    // Approval has tests of its own (enrolment_test.ts); these agents take runs at once.
    config: { autoApprove: true, ...config },
  });
  try {
    await fn(server, dir, logs);
  } finally {
    await server.close();
    await Deno.remove(dir, { recursive: true });
  }
}

function api(server: { url: string; newAdminToken: string | null }) {
  return async <T>(method: string, path: string, body?: unknown): Promise<T> => {
    const res = await fetch(`${server.url}/api${path}`, {
      method,
      headers: {
        authorization: `Bearer ${server.newAdminToken}`,
        "content-type": "application/json",
      },
      ...(body instanceof Uint8Array
        ? { body: body as Uint8Array<ArrayBuffer> }
        : body !== undefined
        ? { body: JSON.stringify(body) }
        : {}),
    });
    const json = await res.json();
    if (!res.ok) throw new Error(`${method} ${path}: ${JSON.stringify(json)}`);
    return json as T;
  };
}

function agentOptions(server: { url: string; joinToken: string }, dir: string, name: string) {
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
}

Deno.test("an agent with a wrong join token is refused, and the server logs it", async () => {
  await withServer(async (server, dir, logs) => {
    await rejects(
      () => startAgent({ ...agentOptions(server, dir, "intruder"), joinToken: "join_wrong" }),
      /Server refused this agent: Wrong, expired or used-up join token/,
    );
    ok(logs.some((l) => l.includes("agent join refused")), "the refusal is logged");
    deepEqual((await api(server)<{ agents: AgentInfo[] }>("GET", "/agents")).agents, []);
  });
});

Deno.test("an enrolled agent reconnects with its credential after the server restarts with another join token", async () => {
  const dir = await Deno.makeTempDir({ prefix: "oneoff-agent-e2e-" });
  const serve = (http: string, joinToken: string) =>
    startServer({
      http,
      dataDir: `${dir}/server`,
      log: silent,
      config: { joinToken, autoApprove: true },
    });
  const first = await serve("127.0.0.1:0", "join_before");
  const agent = await startAgent(agentOptions(first, dir, "moved"));
  await first.close();
  const second = await serve(new URL(first.url).host, "join_after");
  try {
    const { agents } = await waitFor(async () => {
      // The admin token was made by the first start only.
      const admin = { url: second.url, newAdminToken: first.newAdminToken };
      const reply = await api(admin)<{ agents: AgentInfo[] }>("GET", "/agents");
      return reply.agents[0]?.state === "online" && reply;
    }, { message: "the agent to be back online" });
    deepEqual(agents.map((a) => [a.name, a.trust]), [["moved", "approved"]]);
  } finally {
    await agent.close();
    await second.close();
    await Deno.remove(dir, { recursive: true });
  }
});

/** A raw control channel: each frame the server sends, in order. */
function rawChannel(server: { url: string }) {
  const socket = new WebSocket(server.url.replace(/^http/, "ws") + AGENT_CHANNEL_PATH);
  const frames: string[] = [];
  const waiters: (() => void)[] = [];
  socket.onmessage = (event) => {
    frames.push(String(event.data));
    waiters.splice(0).forEach((wake) => wake());
  };
  const opened = new Promise((resolve) => socket.onopen = resolve);
  const closed = new Promise((resolve) => socket.onclose = resolve);
  return {
    socket,
    opened,
    closed,
    async next(): Promise<unknown> {
      while (frames.length === 0) await new Promise<void>((wake) => waiters.push(wake));
      return JSON.parse(frames.shift()!);
    },
  };
}

Deno.test("the server refuses a malformed hello, naming the field", async () => {
  await withServer(async (server) => {
    const channel = rawChannel(server);
    await channel.opened;
    channel.socket.send(JSON.stringify({ type: "hello", token: server.joinToken, name: "x" }));
    deepEqual(await channel.next(), {
      type: "refused",
      reason: 'Malformed hello: Field "version" must be a string',
    });
    await channel.closed;
  });
});

Deno.test("a malformed message from a joined agent is logged and dropped; the channel stays", async () => {
  await withServer(async (server, _dir, logs) => {
    const channel = rawChannel(server);
    await channel.opened;
    channel.socket.send(JSON.stringify({
      type: "hello",
      token: server.joinToken,
      name: "raw",
      version: "0.1.0",
      capacity: 1,
      sandbox: "bwrap",
      attach: { host: "127.0.0.1", port: 5000, tls: false },
      running: [],
      ended: [],
      warnings: [],
    }));
    equal((await channel.next() as { type: string }).type, "enrolled");
    equal((await channel.next() as { type: string }).type, "welcome");
    channel.socket.send(JSON.stringify({ type: "run_state", runId: 7, state: "exited", at: 1 }));
    channel.socket.send("{not json");
    const dropped = await waitFor(() => {
      const found = logs.filter((l) => l.includes("malformed agent message dropped"));
      return found.length === 2 && found;
    }, { message: "both malformed messages to be logged and dropped", seen: () => logs });
    ok(dropped[0]!.includes('Field \\"runId\\" must be a string'), dropped[0]);
    const { agents } = await api(server)<{ agents: AgentInfo[] }>("GET", "/agents");
    deepEqual(agents.map((a) => [a.name, a.state]), [["raw", "online"]]);
    channel.socket.close();
    await channel.closed;
  });
});

Deno.test("a pending run starts when an agent with capacity joins; agents shows it online, then offline", async () => {
  await withServer(async (server, dir) => {
    const call = api(server);
    await call("POST", "/apps", { name: "demo" });
    await call("POST", "/apps/demo/deploy", await makeSlug({ "a.txt": "a" }));
    const { run } = await call<{ run: RunInfo }>("POST", "/apps/demo/runs", {
      command: "echo placed",
    });
    deepEqual(run.state, "pending");
    const agent = await startAgent(agentOptions(server, dir, "late-agent"));
    try {
      const ended = await call<{ run: RunInfo }>("GET", `/apps/demo/runs/${run.label}?wait=30`);
      deepEqual([ended.run.state, ended.run.exit_code, ended.run.agent], [
        "exited",
        0,
        "late-agent",
      ]);
      const { agents } = await call<{ agents: AgentInfo[] }>("GET", "/agents");
      deepEqual(agents.map((a) => [a.name, a.state, a.capacity, a.sandbox]), [[
        "late-agent",
        "online",
        2,
        "bwrap",
      ]]);
    } finally {
      await agent.close();
    }
    let agents: AgentInfo[] = [];
    const offline = await waitFor(async () => {
      agents = (await call<{ agents: AgentInfo[] }>("GET", "/agents")).agents;
      return agents[0]?.state === "offline" && agents[0];
    }, { message: "the agent to be offline", seen: () => agents });
    deepEqual(offline.running, 0);
  });
});

Deno.test("runs beyond every agent's capacity wait, and fail at the queue timeout", async () => {
  await withServer(async (server, dir) => {
    const call = api(server);
    await call("POST", "/apps", { name: "demo" });
    await call("POST", "/apps/demo/deploy", await makeSlug({ "a.txt": "a" }));
    const agent = await startAgent(agentOptions(server, dir, "small"));
    try {
      for (let i = 0; i < 2; i++) await call("POST", "/apps/demo/runs", { command: "sleep 30" });
      const { run } = await call<{ run: RunInfo }>("POST", "/apps/demo/runs", {
        command: "echo third",
      });
      deepEqual(run.state, "pending");
      let last: RunInfo | undefined;
      const failed = await waitFor(async () => {
        last = (await call<{ run: RunInfo }>("GET", `/apps/demo/runs/${run.label}`)).run;
        return last.state === "failed" && last;
      }, { message: `${run.label} to fail`, seen: () => last?.state });
      match(failed.reason ?? "", /No agent had capacity/);
    } finally {
      await agent.close();
    }
  }, { queueTimeoutMs: 1500 });
});

Deno.test("a slug with an escaping symlink is refused at deploy, with the entry named", async () => {
  await withServer(async (server, dir) => {
    const call = api(server);
    await call("POST", "/apps", { name: "demo" });
    const src = await Deno.makeTempDir({ dir });
    await Deno.symlink("/etc/shadow", `${src}/leak`);
    const tar = await new Deno.Command("tar", {
      args: ["-czf", "-", "-C", src, "."],
      stdout: "piped",
    }).output();
    await rejects(
      () => call("POST", "/apps/demo/deploy", tar.stdout),
      /bad_slug.*Slug is refused: symlink .*leak.* points to the absolute path/,
    );
    const { app } = await call<{ app: { release: number | null } }>("GET", "/apps/demo");
    deepEqual(app.release, null, "no release was made");
  });
});
