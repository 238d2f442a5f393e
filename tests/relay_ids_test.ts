/**
 * The agent's leg of a relay, against a real server with agents that are
 * only their control channels (tests/_channel_agent.ts): a relay ID is
 * usable once, by the agent asked, with its own credential.
 * @module
 */
import { deepEqual, equal } from "node:assert/strict";
import { AGENT_RELAY_PATH, dialRelay, RelayConn } from "../protocol/mod.ts";
import { startServer } from "../server/mod.ts";
import { makeSlug } from "../server/_testing.ts";
import { createLogger } from "../util/log.ts";
import { channelAgent } from "./_channel_agent.ts";

Deno.test("a relay ID is one use, only for the agent asked, with its own credential", async () => {
  const dir = await Deno.makeTempDir({ prefix: "oneoff-relay-ids-" });
  const server = await startServer({
    http: "127.0.0.1:0",
    dataDir: dir,
    config: { joinToken: "join_test", autoApprove: true },
    log: createLogger("test", { level: "silent" }),
  });
  try {
    const token = server.newAdminToken!;
    const api = (method: string, path: string, body?: unknown) =>
      fetch(`${server.url}/api${path}`, {
        method,
        headers: { authorization: `Bearer ${token}` },
        ...(body === undefined
          ? {}
          : { body: body instanceof Uint8Array ? body as BodyInit : JSON.stringify(body) }),
      }).then((res) => res.json());
    await api("POST", "/apps", { name: "demo" });
    await api("POST", "/apps/demo/deploy", await makeSlug({ "Procfile": "web: true\n" }));
    await using a = await channelAgent(server.url, { joinToken: "join_test", name: "a" });
    await using b = await channelAgent(server.url, { joinToken: "join_test", name: "b" });
    const credential = (agent: typeof a) => {
      const enrolled = agent.received.find((m) => m.type === "enrolled");
      return enrolled?.type === "enrolled" ? enrolled.credential : "";
    };
    const { run } = await api("POST", "/apps/demo/runs", { command: "cat", attached: true });
    // Whichever agent the run went to carries it; the other one is the stranger.
    const [carrier, stranger] = await Promise.race([
      a.next("start_run").then(() => [a, b] as const),
      b.next("start_run").then(() => [b, a] as const),
    ]);
    carrier.send({ type: "attach_ready", runId: run.id, expiresAt: Date.now() + 60_000 });

    const ws = server.url.replace(/^http/, "ws");
    const client = new RelayConn(
      await dialRelay(`${ws}/api/apps/demo/runs/${run.label}/relay`, {
        headers: { authorization: `Bearer ${token}` },
      }),
    );
    const { relayId, clientAddress } = await carrier.next("open_relay");
    equal(clientAddress, "127.0.0.1");
    const leg = `${server.url}${AGENT_RELAY_PATH}/${relayId}`;
    const status = async (bearer: string) => {
      const res = await fetch(leg, { headers: { authorization: `Bearer ${bearer}` } });
      await res.body?.cancel();
      return res.status;
    };
    equal(await status("not-a-credential"), 401);
    equal(await status(credential(stranger)), 404, "another agent cannot take it");
    const agentSide = new RelayConn(
      await dialRelay(`${ws}${AGENT_RELAY_PATH}/${relayId}`, {
        headers: { authorization: `Bearer ${credential(carrier)}` },
      }),
    );
    equal(await status(credential(carrier)), 404, "used once, gone");

    // Joined: bytes both ways, and the half-close passes.
    await client.write(new TextEncoder().encode("ping"));
    await client.closeWrite();
    const buf = new Uint8Array(16);
    equal(new TextDecoder().decode(buf.subarray(0, (await agentSide.read(buf))!)), "ping");
    equal(await agentSide.read(buf), null);
    await agentSide.write(new TextEncoder().encode("pong"));
    agentSide.close();
    equal(new TextDecoder().decode(buf.subarray(0, (await client.read(buf))!)), "pong");
    equal(await client.read(buf), null);
    deepEqual(await client.ended, { clean: true, reason: "closed" });
  } finally {
    await server.close();
    await Deno.remove(dir, { recursive: true });
  }
});
