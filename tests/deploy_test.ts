import { cli } from "./_processes.ts";
import { deepEqual, doesNotMatch, equal, match, notEqual, ok } from "node:assert/strict";
/**
 * The systemd units in `deploy/`: `systemd-analyze verify` accepts them
 * without a single warning, and their offline security review stays where
 * docs/install.md says (the server locked down, the agent as open as
 * bubblewrap needs and no more). The machine need not boot with systemd.
 * @module
 */
import { needs, PG_URL, tool } from "./_tools.ts";
import { waitFor } from "./_wait.ts";

const DEPLOY = new URL("../deploy/", import.meta.url).pathname;
const UNITS = ["oneoff-server.service", "oneoff-agent.service"];
/** Where the units expect the wrapper; verify checks that ExecStart's program exists. */
const INSTALLED = "/usr/local/bin/oneoff";

/** The units copied to a temp dir, ExecStart pointed at deploy/oneoff, which does exist. */
async function unitsDir(): Promise<string> {
  const dir = await Deno.makeTempDir({ prefix: "oneoff-units-" });
  for (const unit of UNITS) {
    const text = await Deno.readTextFile(`${DEPLOY}${unit}`);
    ok(text.includes(INSTALLED), `${unit} runs ${INSTALLED}`);
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
      deepEqual([res.code, res.stderr.trim()], [0, ""], res.stderr + res.stdout);
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
        ok(match, res.stdout + res.stderr);
        return { score: Number(match[1]), report: res.stdout };
      };
      const server = await exposure("oneoff-server.service");
      ok(server.score <= 2, `server exposure ${server.score}:\n${server.report}`);
      const agent = await exposure("oneoff-agent.service");
      ok(agent.score <= 7.5, `agent exposure ${agent.score}:\n${agent.report}`);

      const agentUnit = await Deno.readTextFile(`${dir}/oneoff-agent.service`);
      for (const line of ["Delegate=yes", "KillMode=mixed", "StateDirectory=oneoff-agent"]) {
        match(agentUnit, new RegExp(`^${line}$`, "m"));
      }
      // Each of these would stop bubblewrap: it mounts a fresh /proc (refused
      // when parts of /proc are hidden) and makes namespaces of every kind.
      for (
        const key of ["ProtectKernelTunables", "ProtectKernelLogs", "ProtectProc", "ProcSubset"]
      ) {
        doesNotMatch(agentUnit, new RegExp(`^${key}=`, "m"));
      }
      doesNotMatch(agentUnit, /^RestrictNamespaces=/m);
      doesNotMatch(agentUnit, /^ProtectControlGroups=yes/m);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
}));

/**
 * The mount and privilege part of oneoff-agent.service, reproduced without
 * systemd: a private mount namespace where every mount but /proc, /sys and
 * /dev is read-only (ProtectSystem=strict) except the state directory
 * (StateDirectory=), /tmp and /var/tmp private (PrivateTmp), /root and /home
 * empty (ProtectHome), then no new privileges and no module loading or clock
 * setting (NoNewPrivileges, ProtectKernelModules, ProtectClock). With
 * `--hide-proc-sys`, /proc/sys is also made read-only, as ProtectKernelTunables
 * would.
 */
const HARDENED = `set -eu
hide=no; [ "$1" = --hide-proc-sys ] && { hide=yes; shift; }
state="$1"; shift
mount --bind "$state" "$state"
awk '{print $5}' /proc/self/mountinfo | sort -u | while read -r point; do
  case "$point" in /proc|/proc/*|/sys|/sys/*|/dev|/dev/*|"$state") continue;; esac
  mount -o remount,bind,ro "$point" 2>/dev/null || true
done
for dir in /tmp /var/tmp; do mount -t tmpfs -o mode=1777 tmpfs "$dir"; done
for dir in /root /home; do mount -t tmpfs -o mode=0755 tmpfs "$dir"; done
[ "$hide" = no ] || { mount --bind /proc/sys /proc/sys; mount -o remount,bind,ro /proc/sys; }
exec setpriv --no-new-privs --bounding-set -sys_module,-sys_time,-wake_alarm -- "$@"
`;

/** `command` under the agent unit's hardening, in a mount namespace of its own. */
function hardened(state: string, command: string[], options: { hideProcSys?: boolean } = {}) {
  return new Deno.Command("unshare", {
    args: [
      "--mount",
      "--propagation",
      "private",
      "sh",
      "-c",
      HARDENED,
      "hardened",
      ...(options.hideProcSys ? ["--hide-proc-sys"] : []),
      state,
      ...command,
    ],
    // The unit's DENO_DIR would be /opt/oneoff/.deno; here the private /tmp.
    env: { DENO_DIR: "/tmp/deno", NO_COLOR: "1" },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  });
}

const MAIN = new URL("../main.ts", import.meta.url).pathname;

/** A process whose output is collected as it comes, killed at the end. */
function collect(child: Deno.ChildProcess) {
  const seen = { output: "" };
  const done = Promise.all([child.stdout, child.stderr].map(async (stream) => {
    for await (const text of stream.pipeThrough(new TextDecoderStream())) seen.output += text;
  }));
  return {
    seen,
    async [Symbol.asyncDispose]() {
      try {
        child.kill("SIGTERM");
      } catch { /* already ended */ }
      await child.status;
      await done;
    },
  };
}

Deno.test(needs(["root", "cgroups"], {
  name: "bubblewrap runs under the agent unit's hardening, and not with /proc/sys hidden",
  async fn() {
    const sandboxTrue = [
      ...["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--"],
      ...["/usr/bin/bwrap", "--unshare-all", "--ro-bind", "/usr", "/usr"],
      ...["--symlink", "usr/bin", "/bin", "--symlink", "usr/lib", "/lib"],
      ...["--symlink", "usr/lib64", "/lib64", "--proc", "/proc", "--dev", "/dev", "/bin/true"],
    ];
    const state = await Deno.makeTempDir({ dir: "/var/lib", prefix: "oneoff-agent-test-" });
    try {
      const allowed = await hardened(state, sandboxTrue).output();
      equal(allowed.code, 0, new TextDecoder().decode(allowed.stderr));
      const hidden = await hardened(state, sandboxTrue, { hideProcSys: true }).output();
      notEqual(hidden.code, 0, "ProtectKernelTunables would stop bubblewrap");
      match(new TextDecoder().decode(hidden.stderr), /Can't mount proc/);
    } finally {
      await Deno.remove(state, { recursive: true });
    }
  },
}));

Deno.test(needs(["root", "cgroups"], {
  name: "an agent under the agent unit's hardening runs attached and detached one-offs",
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "oneoff-hardened-" });
    const state = await Deno.makeTempDir({ dir: "/var/lib", prefix: "oneoff-agent-test-" });
    try {
      const port = (() => {
        const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
        const { port } = listener.addr as Deno.NetAddr;
        listener.close();
        return port;
      })();
      await using server = collect(
        new Deno.Command(Deno.execPath(), {
          args: [
            "run",
            "-A",
            "--quiet",
            MAIN,
            "server",
            "--auto-approve",
            "--http",
            `127.0.0.1:${port}`,
          ]
            .concat(["--data-dir", `${dir}/server`]),
          stdin: "null",
          stdout: "piped",
          stderr: "piped",
        }).spawn(),
      );
      const url = `http://127.0.0.1:${port}`;
      await waitFor(
        () => fetch(`${url}/healthz`).then((res) => res.ok, () => false),
        { message: "the server to answer", seen: () => server.seen.output },
      );
      const joinToken = (await Deno.readTextFile(`${dir}/server/join.token`)).trim();
      const token = (await Deno.readTextFile(`${dir}/server/admin.token`)).trim();
      await using agent = collect(
        hardened(state, [
          ...[Deno.execPath(), "run", "-A", "--quiet", MAIN, "agent", "--server", url],
          ...["--join-token", joinToken, "--name", "hardened", "--attach", "127.0.0.1:0"],
          ...["--data-dir", state],
        ]).spawn(),
      );
      const env = { ONEOFF_SERVER: url, ONEOFF_TOKEN: token, HOME: dir };
      await waitFor(async () => {
        const res = await cli(env, ["agents", "--json"]);
        return res.code === 0 &&
          JSON.parse(res.stdout).some((a: { name: string; state: string }) =>
            a.name === "hardened" && a.state === "online"
          );
      }, { message: "the hardened agent to be online", seen: () => agent.seen.output });

      equal((await cli(env, ["apps", "create", "demo"])).code, 0);
      const demo = new URL("../examples/demo", import.meta.url).pathname;
      const deployed = await cli(env, ["deploy", "-a", "demo", demo]);
      equal(deployed.code, 0, deployed.stderr);
      const attached = await cli(
        env,
        ["run", "-a", "demo", "--no-tty", "--", "read x; echo got-$x; id -u; exit 3"],
        "hardened\n",
      );
      deepEqual(
        [attached.code, attached.stdout],
        [3, "got-hardened\n65534\n"],
        attached.stderr + agent.seen.output,
      );
      const detached = await cli(env, ["run", "-a", "demo", "-d", "--", "echo detached-hardened"]);
      equal(detached.code, 0, detached.stderr);
      await waitFor(async () => {
        const res = await cli(env, ["logs", "-a", "demo"]);
        return res.stdout.includes("detached-hardened");
      }, { message: "the detached run's output in the logs", seen: () => agent.seen.output });
    } finally {
      await Deno.remove(dir, { recursive: true });
      await Deno.remove(state, { recursive: true });
    }
  },
}));

/** `KEY=value` lines of an env file, comments left out. */
async function envFile(path: string): Promise<Record<string, string>> {
  const entries = (await Deno.readTextFile(path)).split("\n")
    .filter((line) => /^[A-Z_]+=/.test(line))
    .map((line) => [line.slice(0, line.indexOf("=")), line.slice(line.indexOf("=") + 1)]);
  return Object.fromEntries(entries);
}

Deno.test(needs(["postgres", "root"], {
  name:
    "the server starts on PostgreSQL over its socket with peer authentication, as server.env says",
  async fn() {
    const env = await envFile(`${DEPLOY}server.env`);
    equal(env.ONEOFF_DATABASE, "postgres:///oneoff");
    ok(env.PGHOST, "server.env sets PGHOST");
    const { default: postgres } = await import("postgres");
    const admin = postgres(PG_URL!, { max: 1, onnotice: () => {} });
    // Peer authentication: the OS user (root here, oneoff in the unit) is the role.
    const role = "root";
    const database = `oneoff_peer_${crypto.randomUUID().slice(0, 8)}`;
    const dir = await Deno.makeTempDir({ prefix: "oneoff-peer-" });
    const found = await admin`select 1 from pg_roles where rolname = ${role}`;
    const exists = found.length > 0;
    if (!exists) await admin.unsafe(`create role ${role} login`);
    await admin.unsafe(`create database ${database} owner ${role}`);
    try {
      const port = (() => {
        const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
        const { port } = listener.addr as Deno.NetAddr;
        listener.close();
        return port;
      })();
      const url = `http://127.0.0.1:${port}`;
      await using server = collect(
        new Deno.Command(Deno.execPath(), {
          args: [
            "run",
            "-A",
            "--quiet",
            MAIN,
            "server",
            "--auto-approve",
            "--http",
            `127.0.0.1:${port}`,
          ]
            .concat(["--data-dir", dir, "--database", `postgres:///${database}`]),
          env: { PGHOST: env.PGHOST!, USER: role },
          stdin: "null",
          stdout: "piped",
          stderr: "piped",
        }).spawn(),
      );
      await waitFor(
        () => fetch(`${url}/healthz`).then((res) => res.ok, () => false),
        { message: "the server on PostgreSQL to answer", seen: () => server.seen.output },
      );
      const token = (await Deno.readTextFile(`${dir}/admin.token`)).trim();
      const cliEnv = { ONEOFF_SERVER: url, ONEOFF_TOKEN: token, HOME: dir };
      const created = await cli(cliEnv, ["apps", "create", "peer"]);
      equal(created.code, 0, created.stderr);
      const db = postgres(PG_URL!.replace(/\/[^/]*$/, `/${database}`), { max: 1 });
      try {
        const rows = await db`select name from apps`;
        deepEqual(rows.map((row) => row.name), ["peer"]);
      } finally {
        await db.end();
      }
    } finally {
      await admin.unsafe(`drop database if exists ${database} with (force)`);
      if (!exists) await admin.unsafe(`drop role if exists ${role}`);
      await admin.end();
      await Deno.remove(dir, { recursive: true });
    }
  },
}));
