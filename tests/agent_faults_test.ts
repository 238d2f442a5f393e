import { deepEqual, equal, match, ok } from "node:assert/strict";
/**
 * The agent under real faults: SIGKILLed while the network to the server is
 * cut (its spooled output and its runs must survive into its next life, its
 * sandboxes' traces must not), stopped with SIGTERM (runs drain, then are
 * stopped with a reason), and its data dir never holding a run's secrets.
 * @module
 */
import type { SandboxKind } from "../protocol/mod.ts";
import { INTERRUPTED_REASON } from "../agent/outcomes.ts";
import {
  AgentProcess,
  faultServer,
  filesContaining,
  HoldingProxy,
  pidsWith,
  runCgroups,
  spooledLines,
} from "./_agent_process.ts";
import { startSystem } from "./_system.ts";
import { type Need, needs } from "./_tools.ts";
import { waitFor } from "./_wait.ts";

const LINES = 3000;

function needsFor(kind: SandboxKind): Need[] {
  return kind === "runc" ? ["root", "cgroups", "runc"] : ["root", "cgroups"];
}

for (const kind of ["bwrap", "runc"] as const) {
  Deno.test(needs(needsFor(kind), {
    name:
      `${kind}: an agent SIGKILLed during a partition leaves no trace after its restart, delivers its spooled lines once and reports its run`,
    async fn() {
      await using sys = await faultServer();
      await using proxy = new HoldingProxy(sys.server.url);
      const dataDir = `${sys.dir}/agent`;
      const marker = `marker-${crypto.randomUUID()}`;
      const agentOptions = { name: "vm-1", dataDir, sandbox: kind };
      let run;
      {
        await using first = new AgentProcess(proxy.url, sys.server.joinToken, agentOptions);
        await sys.online("vm-1");
        // Its output comes a while after it starts: by then the network is cut.
        run = await sys.detached(
          `echo begin; sleep 3; i=0; while [ $i -lt ${LINES} ]; do i=$((i+1)); echo line-$i; done; sleep 600 # ${marker}`,
        );
        await waitFor(async () => (await sys.lines(run.label)).includes("begin"), {
          message: "the run's first line to be stored",
          seen: () => first.stderr,
        });
        proxy.hold();
        await waitFor(
          async () => (await spooledLines(dataDir, run.id)).length >= LINES,
          { message: `${LINES} lines spooled on the agent's disk`, timeoutMs: 30_000 },
        );
        deepEqual(await sys.lines(run.label), ["begin"], "the partition held");
        const status = await first.stop("SIGKILL");
        equal(status.signal, "SIGKILL");
      }
      // What a killed agent cannot help leaving: its run's cgroup and scratch directory.
      ok((await runCgroups(run.id)).length > 0, "the killed agent left its run's cgroup");
      proxy.release();

      await using second = new AgentProcess(proxy.url, sys.server.joinToken, agentOptions);
      await sys.online("vm-1");
      await waitFor(async () => (await sys.lines(run.label)).length >= LINES + 1, {
        message: "the spooled lines to be delivered",
        seen: () => second.stderr,
      });
      const lines = await sys.lines(run.label);
      deepEqual(lines, [
        "begin",
        ...Array.from({ length: LINES }, (_, i) => `line-${i + 1}`),
      ], "every line once, in order");
      deepEqual(await runCgroups(run.id), [], "no run cgroup is left");
      deepEqual(
        await Array.fromAsync(Deno.readDir(`${dataDir}/work/runs`)),
        [],
        "no scratch directory is left",
      );
      // The killed run's network keeper (pasta and its shell, outside the
      // run's cgroup) ends on its own a moment after the sandbox has gone.
      await waitFor(async () => (await pidsWith(marker)).length === 0, {
        message: "no sandbox process to be left",
        timeoutMs: 10_000,
      });
      await waitFor(async () => (await spooledLines(dataDir, run.id)).length === 0, {
        message: "the spool to be emptied by the acks",
      });
      const ended = await waitFor(async () => {
        const info = await sys.run(run.id);
        return info.state === "failed" || info.state === "lost" ? info : null;
      }, { message: "the run to end" });
      if (ended.state === "failed") {
        equal(ended.reason, INTERRUPTED_REASON);
      } else {
        // A server without `hello.ended` (before it learnt it) marks it lost
        // at the rejoin; the agent still holds the failed end, unacknowledged.
        const kept = JSON.parse(await Deno.readTextFile(`${dataDir}/ended/${run.id}.json`));
        deepEqual([kept.state, kept.reason], ["failed", INTERRUPTED_REASON]);
      }
      equal((await second.stop("SIGTERM")).code, 0, second.stderr);
    },
  }));

  Deno.test(needs(needsFor(kind), {
    name:
      `${kind}: while a run runs, no file under the agent's data dir holds its secret env value`,
    async fn() {
      await using sys = await startSystem({ sandbox: kind });
      const secret = `s3cr3t-${crypto.randomUUID()}`;
      const res = await sys.cli([
        "run",
        "-d",
        "-a",
        "demo",
        "-e",
        `API_KEY=${secret}`,
        "--",
        'test -n "$API_KEY" && echo has-key; sleep 600',
      ]);
      equal(res.code, 0, res.stderr);
      // Printed from inside the sandbox: bwrap and runc have read their files by then.
      await waitFor(
        async () => (await sys.cli(["logs", "-a", "demo"])).stdout.includes("has-key"),
        {
          message: "the run to start with its secret",
        },
      );
      deepEqual(await filesContaining(`${sys.dir}/agent`, secret), []);
    },
  }));
}

Deno.test(needs(["root", "cgroups"], {
  name:
    "SIGTERM drains an agent: a run that finishes in time ends exited with all its lines, one that does not ends stopped with a reason, exit 0, nothing left",
  async fn() {
    await using sys = await faultServer();
    const dataDir = `${sys.dir}/agent`;
    const marker = `marker-${crypto.randomUUID()}`;
    await using agent = new AgentProcess(sys.server.url, sys.server.joinToken, {
      name: "vm-1",
      dataDir,
      sandbox: "bwrap",
      flags: ["--drain-timeout", "3s", "--stop-grace", "500ms"],
    });
    await sys.online("vm-1");
    // SIGTERM ignored (inherited by sleep too): only SIGKILL ends it.
    const stubborn = await sys.detached(`trap "" TERM; echo started; sleep 600 # ${marker}`);
    const quick = await sys.detached(`echo one; sleep 1; echo two # ${marker}`);
    await waitFor(
      async () =>
        (await sys.lines(stubborn.label)).includes("started") &&
        (await sys.lines(quick.label)).includes("one"),
      { message: "both runs to have started", seen: () => agent.stderr },
    );
    const status = await agent.stop("SIGTERM");
    deepEqual([status.code, status.signal], [0, null], agent.stderr);
    const quickEnd = await sys.run(quick.id);
    deepEqual([quickEnd.state, quickEnd.exit_code], ["exited", 0]);
    deepEqual(await sys.lines(quick.label), ["one", "two"]);
    const stubbornEnd = await sys.run(stubborn.id);
    deepEqual([stubbornEnd.state, stubbornEnd.reason], ["stopped", "The agent was stopped"]);
    deepEqual(await sys.lines(stubborn.label), ["started", "oneoff: The agent was stopped"]);
    for (const run of [quick, stubborn]) deepEqual(await runCgroups(run.id), []);
    deepEqual(await Array.fromAsync(Deno.readDir(`${dataDir}/work/runs`)), []);
    // The runs' network keepers (pasta and its shell, outside the runs'
    // cgroups) end on their own a moment after the sandboxes have gone.
    await waitFor(async () => (await pidsWith(marker)).length === 0, {
      message: "no sandbox process to be left",
      timeoutMs: 10_000,
    });
    match(agent.stderr, /agent draining/);
  },
}));

Deno.test(needs(["root"], {
  name:
    "a full log spool pauses the run's process instead of dropping output; after the partition every line is stored once and the run exits 0",
  async fn() {
    await using sys = await faultServer();
    await using proxy = new HoldingProxy(sys.server.url);
    const dataDir = `${sys.dir}/agent`;
    const marker = `marker-${crypto.randomUUID()}`;
    await using agent = new AgentProcess(proxy.url, sys.server.joinToken, {
      name: "vm-1",
      dataDir,
      sandbox: "bwrap",
      flags: ["--spool-max-bytes", "32KiB"],
    });
    await sys.online("vm-1");
    const count = 8000;
    const pad = "x".repeat(60);
    const run = await sys.detached(
      `echo begin; sleep 2; i=0; while [ $i -lt ${count} ]; do i=$((i+1)); echo line-$i-${pad}; done # ${marker}`,
    );
    await waitFor(async () => (await sys.lines(run.label)).includes("begin"), {
      message: "the run's first line to be stored",
      seen: () => agent.stderr,
    });
    proxy.hold();
    await waitFor(() => /log spool full/.test(agent.stderr), {
      message: "the agent to say its spool is full",
      seen: () => agent.stderr,
    });
    // The sandboxed shell waits on its full pipe: paused, not dropped.
    await waitFor(async () => {
      for (const pid of await pidsWith(marker)) {
        const wchan = await Deno.readTextFile(`/proc/${pid}/wchan`).catch(() => "");
        if (wchan.includes("pipe_write")) return true;
      }
      return false;
    }, { message: "the run's process to be blocked writing to its pipe" });
    ok((await spooledLines(dataDir, run.id)).length < count);
    equal(agent.stderr.match(/log spool full/g)?.length, 1, "said once");
    proxy.release();
    const ended = await waitFor(async () => {
      const info = await sys.run(run.id);
      return info.state === "exited" ? info : null;
    }, { message: "the run to exit", seen: () => agent.stderr, timeoutMs: 60_000 });
    equal(ended.exit_code, 0);
    await waitFor(async () => (await sys.lines(run.label)).length >= count + 1, {
      message: "every line to be stored",
    });
    deepEqual(await sys.lines(run.label), [
      "begin",
      ...Array.from({ length: count }, (_, i) => `line-${i + 1}-${pad}`),
    ]);
    match(agent.stderr, /log spool has room again/);
  },
}));

Deno.test(needs(["root"], {
  name:
    "a run that prints and exits while the server is cut off keeps its lines and its end on the agent's disk, and both are delivered afterwards",
  async fn() {
    await using sys = await faultServer();
    await using proxy = new HoldingProxy(sys.server.url);
    const dataDir = `${sys.dir}/agent`;
    await using agent = new AgentProcess(proxy.url, sys.server.joinToken, {
      name: "vm-1",
      dataDir,
      sandbox: "bwrap",
    });
    await sys.online("vm-1");
    const count = 5000;
    const run = await sys.detached(
      `echo begin; sleep 2; i=0; while [ $i -lt ${count} ]; do i=$((i+1)); echo line-$i; done`,
    );
    await waitFor(async () => (await sys.lines(run.label)).includes("begin"), {
      message: "the run's first line to be stored",
      seen: () => agent.stderr,
    });
    proxy.hold();
    const kept = await waitFor(
      () => Deno.readTextFile(`${dataDir}/ended/${run.id}.json`).then(JSON.parse, () => null),
      { message: "the run's end to be kept on the agent's disk", seen: () => agent.stderr },
    );
    deepEqual([kept.state, kept.exitCode, kept.lines], ["exited", 0, count + 1]);
    equal((await spooledLines(dataDir, run.id)).length, count, "unacknowledged lines wait");
    proxy.release();
    await waitFor(async () => (await sys.lines(run.label)).length >= count + 1, {
      message: "the spooled lines to be delivered",
      seen: () => agent.stderr,
    });
    deepEqual(await sys.lines(run.label), [
      "begin",
      ...Array.from({ length: count }, (_, i) => `line-${i + 1}`),
    ]);
    const ended = await waitFor(async () => {
      const info = await sys.run(run.id);
      return info.state === "exited" || info.state === "lost" ? info : null;
    }, { message: "the run to end" });
    if (ended.state === "exited") {
      equal(ended.exit_code, 0);
      await waitFor(
        () => Deno.stat(`${dataDir}/ended/${run.id}.json`).then(() => false, () => true),
        { message: "the agent to forget the acknowledged end" },
      );
    } else {
      // A server that ignores `hello.ended` (before it learnt it) marks the run lost at the
      // rejoin and never acknowledges the end: the agent keeps it, to send again.
      ok(await Deno.stat(`${dataDir}/ended/${run.id}.json`).then(() => true, () => false));
    }
  },
}));
