import { deepEqual, equal } from "node:assert/strict";
import { applyV2, type CgroupHost, ownCgroup, planV2, RunCgroup } from "./_cgroups.ts";

const SERVICE = "/system.slice/oneoff-agent.service";

/** A cgroup v2 mount as plain files in a temp dir: enough for the path decisions. */
async function fakeV2(controllers: string): Promise<string & AsyncDisposable> {
  const root = await Deno.makeTempDir({ prefix: "oneoff-cgroup-" });
  await Deno.writeTextFile(`${root}/cgroup.controllers`, "cpuset cpu io memory pids\n");
  await Deno.writeTextFile(`${root}/cgroup.subtree_control`, "");
  await Deno.mkdir(`${root}${SERVICE}`, { recursive: true });
  await Deno.writeTextFile(`${root}${SERVICE}/cgroup.controllers`, controllers);
  await Deno.writeTextFile(`${root}${SERVICE}/cgroup.subtree_control`, "");
  await Deno.writeTextFile(`${root}${SERVICE}/cgroup.procs`, "4242\n");
  return Object.assign(root, {
    [Symbol.asyncDispose]: () => Deno.remove(root, { recursive: true }),
  }) as string & AsyncDisposable;
}

Deno.test("the agent's own cgroup is read from the v2 line of /proc/self/cgroup", () => {
  equal(ownCgroup(`0::${SERVICE}\n`), SERVICE);
  equal(ownCgroup("12:pids:/x\n1:name=systemd:/y\n0::/\n"), "/");
  equal(ownCgroup("12:pids:/x\n"), null);
});

Deno.test("at the hierarchy's root, run cgroups go under /oneoff as before", async () => {
  await using root = await fakeV2("memory pids");
  deepEqual(await planV2(root, "0::/\n"), { base: "oneoff", agentLeaf: null, warning: null });
  deepEqual(await planV2(root, ""), { base: "oneoff", agentLeaf: null, warning: null });
});

Deno.test("in a delegated cgroup the agent moves to a leaf and runs go beside it", async () => {
  await using root = await fakeV2("cpu memory pids\n");
  const layout = await planV2(root, `0::${SERVICE}\n`);
  const rel = SERVICE.slice(1);
  deepEqual(layout, { base: `${rel}/runs`, agentLeaf: `${rel}/agent`, warning: null });
  await applyV2(root, layout);
  equal(await Deno.readTextFile(`${root}${SERVICE}/agent/cgroup.procs`), "4242");
  equal(await Deno.readTextFile(`${root}${SERVICE}/cgroup.subtree_control`), "+memory +pids +cpu");
  equal(
    await Deno.readTextFile(`${root}${SERVICE}/runs/cgroup.subtree_control`),
    "+memory +pids +cpu",
  );
  equal(await Deno.readTextFile(`${root}/cgroup.subtree_control`), "", "the root is not touched");
  // Detected again from inside the leaf: the same layout, no nesting.
  deepEqual(await planV2(root, `0::${SERVICE}/agent\n`), layout);
  const host: CgroupHost = {
    version: 2,
    roots: { memory: root, pids: root, cpu: root },
    allRoots: [root],
    swapAccounting: true,
    base: layout.base,
  };
  const cgroup = RunCgroup.of(host, "r1");
  deepEqual(cgroup.procsFiles, [`${root}${SERVICE}/runs/r1/cgroup.procs`]);
  equal(cgroup.runcPath, `${SERVICE}/runs/r1/ctr`);
});

Deno.test("a cgroup without delegated controllers falls back to /oneoff with a warning", async () => {
  await using root = await fakeV2("cpu\n");
  const layout = await planV2(root, `0::${SERVICE}\n`);
  equal(layout.base, "oneoff");
  equal(layout.agentLeaf, null);
  equal(
    layout.warning,
    `The agent's cgroup ${SERVICE} is not delegated to it (no writable subtree with memory and ` +
      `pids): run cgroups go to /oneoff at the root, outside it; set Delegate=yes in the agent's systemd unit`,
  );
  await applyV2(root, layout);
  equal(await Deno.readTextFile(`${root}/oneoff/cgroup.subtree_control`), "+memory +pids +cpu");
  equal(await Deno.readTextFile(`${root}${SERVICE}/cgroup.procs`), "4242\n", "the agent stays");
});

Deno.test("v1 hosts keep oneoff/<runId> in each hierarchy", () => {
  const host: CgroupHost = {
    version: 1,
    roots: { memory: "/m", pids: "/p", cpu: "/c" },
    allRoots: ["/m", "/p", "/c"],
    swapAccounting: false,
  };
  deepEqual(RunCgroup.of(host, "r1").dirs, ["/m/oneoff/r1", "/p/oneoff/r1", "/c/oneoff/r1"]);
  equal(RunCgroup.of(host, "r1").runcPath, "/oneoff/r1/ctr");
});
