/**
 * The systemd units in `deploy/`: `systemd-analyze verify` accepts them
 * without a single warning, and their offline security review stays where
 * docs/install.md says (the server locked down, the agent as open as
 * bubblewrap needs and no more). The machine need not boot with systemd.
 * @module
 */
import assert from "node:assert/strict";
import { needs, tool } from "./_tools.ts";

const DEPLOY = new URL("../deploy/", import.meta.url).pathname;
const UNITS = ["oneoff-server.service", "oneoff-agent.service"];
/** Where the units expect the wrapper; verify checks that ExecStart's program exists. */
const INSTALLED = "/usr/local/bin/oneoff";

/** The units copied to a temp dir, ExecStart pointed at deploy/oneoff, which does exist. */
async function unitsDir(): Promise<string> {
  const dir = await Deno.makeTempDir({ prefix: "oneoff-units-" });
  for (const unit of UNITS) {
    const text = await Deno.readTextFile(`${DEPLOY}${unit}`);
    assert.ok(text.includes(INSTALLED), `${unit} runs ${INSTALLED}`);
    await Deno.writeTextFile(`${dir}/${unit}`, text.replaceAll(INSTALLED, `${DEPLOY}oneoff`));
  }
  return dir;
}

async function analyze(args: string[], cwd: string) {
  const out = await new Deno.Command(tool("systemd-analyze"), {
    args,
    cwd,
    stdout: "piped",
    stderr: "piped",
  }).output();
  const decoder = new TextDecoder();
  return { code: out.code, stdout: decoder.decode(out.stdout), stderr: decoder.decode(out.stderr) };
}

Deno.test(needs(["systemd-analyze"], {
  name: "the server and agent units pass systemd-analyze verify without a warning",
  async fn() {
    const dir = await unitsDir();
    try {
      const res = await analyze(["verify", ...UNITS.map((unit) => `./${unit}`)], dir);
      assert.deepEqual([res.code, res.stderr.trim()], [0, ""], res.stderr + res.stdout);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
}));

Deno.test(needs(["systemd-analyze"], {
  name: "the units keep their hardening: the server fully, the agent all bubblewrap allows",
  async fn() {
    const dir = await unitsDir();
    try {
      const exposure = async (unit: string) => {
        const res = await analyze(["security", "--offline=yes", `./${unit}`], dir);
        const match = /Overall exposure level for \S+: ([\d.]+)/.exec(res.stdout);
        assert.ok(match, res.stdout + res.stderr);
        return { score: Number(match[1]), report: res.stdout };
      };
      const server = await exposure("oneoff-server.service");
      assert.ok(server.score <= 2, `server exposure ${server.score}:\n${server.report}`);
      const agent = await exposure("oneoff-agent.service");
      assert.ok(agent.score <= 7.5, `agent exposure ${agent.score}:\n${agent.report}`);

      const agentUnit = await Deno.readTextFile(`${dir}/oneoff-agent.service`);
      for (const line of ["Delegate=yes", "KillMode=mixed", "StateDirectory=oneoff-agent"]) {
        assert.match(agentUnit, new RegExp(`^${line}$`, "m"));
      }
      // Each of these would stop bubblewrap: it mounts a fresh /proc (refused
      // when parts of /proc are hidden) and makes namespaces of every kind.
      for (
        const key of ["ProtectKernelTunables", "ProtectKernelLogs", "ProtectProc", "ProcSubset"]
      ) {
        assert.doesNotMatch(agentUnit, new RegExp(`^${key}=`, "m"));
      }
      assert.doesNotMatch(agentUnit, /^RestrictNamespaces=/m);
      assert.doesNotMatch(agentUnit, /^ProtectControlGroups=yes/m);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
}));
