import { deepEqual, equal, ok } from "node:assert/strict";
import postgres from "postgres";
import { needs, PG_URL } from "../../tests/_tools.ts";
import { waitFor } from "../../tests/_wait.ts";
import { createLogger } from "../../util/log.ts";
import type { ServerMessage } from "../../protocol/mod.ts";
import { openStore } from "../store/open.ts";
import { type Cluster, openPostgresCluster } from "./mod.ts";
import { ConnectedAgents } from "../agent_directory.ts";
import type { RunRow } from "../store/mod.ts";
import { Watchers } from "../watch.ts";

/** Two members of one cluster on a schema of their own (migrated). */
async function pair(): Promise<{ a: Cluster; b: Cluster } & AsyncDisposable> {
  const schema = `cluster_unit_${crypto.randomUUID().replaceAll("-", "").slice(0, 10)}`;
  const admin = postgres(PG_URL!, { max: 1, onnotice: () => {} });
  await admin`create schema ${admin(schema)}`;
  const url = new URL(PG_URL!);
  url.searchParams.set("search_path", schema);
  const store = await openStore(url.href);
  await store.close();
  const options = {
    staleMs: 2000,
    leaseCheckMs: 100,
    log: createLogger("test", { level: "silent" }),
  };
  const a = await openPostgresCluster(url.href, options);
  const b = await openPostgresCluster(url.href, options);
  return {
    a,
    b,
    async [Symbol.asyncDispose]() {
      await a.close();
      await b.close();
      await admin`drop schema ${admin(schema)} cascade`;
      await admin.end();
    },
  };
}

Deno.test(needs(["postgres"], {
  name: "one member leads, and another takes over once the leader is gone",
  async fn() {
    await using p = await pair();
    equal([p.a, p.b].filter((m) => m.isLeader()).length, 1);
    const [leader, other] = p.a.isLeader() ? [p.a, p.b] : [p.b, p.a];
    await leader.close();
    await waitFor(() => other.isLeader(), { message: "the other to lead", timeoutMs: 3000 });
  },
}));

Deno.test(needs(["postgres"], {
  name: "signals published by one member wake the other, not itself",
  async fn() {
    await using p = await pair();
    const heardA: string[] = [];
    const heardB: string[] = [];
    p.a.transport!.subscribe((key) => heardA.push(key));
    p.b.transport!.subscribe((key) => heardB.push(key));
    p.a.transport!.publish("logs:7");
    await waitFor(() => heardB.length === 1, { message: "b to hear a's signal" });
    deepEqual(heardB, ["logs:7"]);
    deepEqual(heardA, []);
  },
}));

Deno.test(needs(["postgres"], {
  name: "a control message reaches the member that holds the agent, and the sender hears it",
  async fn() {
    await using p = await pair();
    const got: [string, ServerMessage][] = [];
    p.b.onAgentMessage((agentId, msg) => {
      got.push([agentId, msg]);
      return true;
    });
    const msg: ServerMessage = { type: "stop_run", runId: "r1" };
    equal(await p.a.sendElsewhere("agent-1", msg), false, "nobody holds it yet");
    await p.b.touchAgents(["agent-1"]);
    ok(await p.a.heldElsewhere("agent-1"));
    equal(await p.b.heldElsewhere("agent-1"), false, "held here, not elsewhere");
    equal(await p.a.sendElsewhere("agent-1", msg), true);
    deepEqual(got, [["agent-1", msg]]);
    await p.b.releaseAgent("agent-1");
    equal(await p.a.heldElsewhere("agent-1"), false);
  },
}));

Deno.test(needs(["postgres"], {
  name: "the first key check stored is the one every member compares with",
  async fn() {
    await using p = await pair();
    equal(await p.a.keyCheck("session key", "aaa"), "aaa");
    equal(await p.b.keyCheck("session key", "bbb"), "aaa");
    await p.a.setKeyCheck("session key", "ccc");
    deepEqual(await p.b.keyChecks(), new Map([["session key", "ccc"]]));
  },
}));

Deno.test(needs(["postgres"], {
  name: "a watcher through one member is told to the agent another holds, with its server's count",
  async fn() {
    await using p = await pair();
    const got: ServerMessage[] = [];
    p.b.onAgentMessage((_agentId, msg) => {
      got.push(msg);
      return true;
    });
    await p.b.touchAgents(["agent-1"]);
    const watchers = new Watchers(new ConnectedAgents(), p.a);
    const run = { id: "r1", agent_id: "agent-1" } as RunRow;
    const leave = watchers.join(run, "admin");
    await waitFor(() => got.length === 1, { message: "the agent to hear of the watcher" });
    leave();
    await waitFor(() => got.length === 2, { message: "the agent to hear the watcher left" });
    deepEqual(got, [
      { type: "watchers", runId: "r1", count: 1, server: p.a.serverId, joined: "admin" },
      { type: "watchers", runId: "r1", count: 0, server: p.a.serverId, left: "admin" },
    ]);
  },
}));
