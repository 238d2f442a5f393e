import { cli } from "./_processes.ts";
import { equal, ok } from "node:assert/strict";
/**
 * The top-level Dockerfile for real: a Debian base made from Debian's
 * packages (no registry), the server image and the agent variant built with
 * podman, the server started with its state in a volume, the agent
 * container joining it with the privileges docs/install.md lists, and a
 * detached one-off whose output reaches the app's logs. Everything lives in
 * a podman store of its own under a temp dir, removed at the end.
 * @module
 */
import { needs, tool } from "./_tools.ts";
import { waitFor } from "./_wait.ts";

const ROOT = new URL("..", import.meta.url).pathname;
/** A proxy that inspects TLS is trusted through this bundle; elsewhere it is Debian's own. */
const HOST_CA = "/etc/ssl/certs/ca-certificates.crt";
/** What docs/install.md gives the agent container, and nothing more. */
const AGENT_PRIVILEGES = [
  "--cap-add",
  "SYS_ADMIN",
  "--cap-add",
  "NET_ADMIN",
  "--device",
  "/dev/net/tun",
  "--security-opt",
  "unmask=ALL",
  "--cgroupns",
  "host",
  "--volume",
  "/sys/fs/cgroup:/sys/fs/cgroup:rw",
];

const decoder = new TextDecoder();

/** podman against the test's own store, with the containers.conf these machines need. */
class Podman {
  readonly #global: string[];
  readonly #env: Record<string, string>;

  constructor(dir: string) {
    this.#global = ["--root", `${dir}/storage`, "--runroot", `${dir}/run`];
    this.#env = { CONTAINERS_CONF: `${dir}/containers.conf` };
  }

  static async create(dir: string): Promise<Podman> {
    // default_ulimits: without it podman run fails here ("error setting rlimits").
    // The [engine] paths and file locks keep this store apart from the
    // machine's own (shm locks are shared by every store on the machine).
    await Deno.writeTextFile(
      `${dir}/containers.conf`,
      [
        "[containers]",
        "default_ulimits = []",
        "[engine]",
        'lock_type = "file"',
        `tmp_dir = "${dir}/tmp"`,
        `static_dir = "${dir}/storage/libpod"`,
        `volume_path = "${dir}/storage/volumes"`,
        'events_logger = "file"',
        `events_logfile_path = "${dir}/tmp/events.log"`,
        "",
      ].join("\n"),
    );
    return new Podman(dir);
  }

  async run(args: string[], options: { check?: boolean } = {}) {
    const out = await new Deno.Command(tool("podman"), {
      args: [...this.#global, ...args],
      env: this.#env,
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).output();
    const result = {
      code: out.code,
      stdout: decoder.decode(out.stdout).trim(),
      stderr: decoder.decode(out.stderr),
    };
    if ((options.check ?? true) && result.code !== 0) {
      throw new Error(`podman ${args.join(" ")} exited ${result.code}:\n${result.stderr}`);
    }
    return result;
  }
}

function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { port } = listener.addr as Deno.NetAddr;
  listener.close();
  return port;
}

/** Unmounts every mount at or below `dir`, deepest first. */
async function unmountUnder(dir: string): Promise<void> {
  const mounts = (await Deno.readTextFile("/proc/self/mountinfo")).split("\n")
    .map((line) => line.split(" ")[4] ?? "")
    .filter((point) => point === dir || point.startsWith(`${dir}/`))
    .sort((a, b) => b.length - a.length);
  for (const point of mounts) {
    await new Deno.Command("umount", { args: ["--lazy", point], stderr: "null" }).output();
  }
}

async function seconds<T>(timings: Record<string, number>, step: string, fn: () => Promise<T>) {
  const start = performance.now();
  const value = await fn();
  timings[step] = Math.round((performance.now() - start) / 100) / 10;
  return value;
}

Deno.test(needs(["podman", "mmdebstrap", "root", "cgroups"], {
  name: "the container images build, the server serves and a detached one-off runs on the agent",
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "oneoff-container-" });
    const podman = await Podman.create(dir);
    const id = crypto.randomUUID().slice(0, 8);
    const image = `localhost/oneoff-test-${id}`;
    const server = `oneoff-test-server-${id}`;
    const agent = `oneoff-test-agent-${id}`;
    const timings: Record<string, number> = {};
    try {
      await seconds(timings, "base", async () => {
        // Debian's own packages, without documentation: about what debian:bookworm-slim holds.
        const mm = await new Deno.Command(tool("mmdebstrap"), {
          args: [
            "--quiet",
            "--variant=minbase",
            "--include=ca-certificates",
            "--dpkgopt=path-exclude=/usr/share/doc/*",
            "--dpkgopt=path-exclude=/usr/share/man/*",
            "--dpkgopt=path-exclude=/usr/share/locale/*",
            '--aptopt=Acquire::Languages "none"',
            "bookworm",
            `${dir}/base.tar`,
          ],
          stdout: "piped",
          stderr: "piped",
        }).output();
        equal(mm.code, 0, decoder.decode(mm.stderr));
        await podman.run(["import", "--quiet", `${dir}/base.tar`, `${image}-base:bookworm`]);
        await Deno.remove(`${dir}/base.tar`);
      });
      const build = async (target: string, tag: string) => {
        const secret = await Deno.stat(HOST_CA).then(
          () => ["--secret", `id=ca-certificates,src=${HOST_CA}`],
          () => [],
        );
        await podman.run([
          "build",
          "--quiet",
          "--format",
          "docker", // keeps HEALTHCHECK
          // No bridge: its interfaces would come and go under the tests running alongside.
          "--network",
          "host",
          ...secret,
          "--build-arg",
          `BASE=${image}-base:bookworm`,
          "--target",
          target,
          "--tag",
          tag,
          ROOT,
        ]);
      };
      await seconds(timings, "build server", () => build("server", `${image}:server`));
      // The agent reuses the build stage's layers.
      await seconds(timings, "build agent", () => build("agent", `${image}:agent`));
      const size = async (tag: string) =>
        Number((await podman.run(["image", "inspect", "--format", "{{.Size}}", tag])).stdout);
      const sizes = {
        base: await size(`${image}-base:bookworm`),
        server: await size(`${image}:server`),
        agent: await size(`${image}:agent`),
      };

      // The host's network rather than a published port: a bridge's interfaces would come
      // and go under the tests running alongside (tests/network_test.ts compares them).
      const port = freePort();
      await podman.run([
        "run",
        "--detach",
        "--name",
        server,
        "--network",
        "host",
        "--env",
        `ONEOFF_HEALTH_PORT=${port}`,
        "--volume",
        `${server}-data:/var/lib/oneoff`,
        `${image}:server`,
        "--http",
        `127.0.0.1:${port}`,
        "--data-dir",
        "/var/lib/oneoff",
      ]);
      const url = `http://127.0.0.1:${port}`;
      await seconds(timings, "server up", () =>
        waitFor(async () => {
          const res = await fetch(`${url}/readyz`).catch(() => undefined);
          const body = res ? await res.text() : "";
          return res?.status === 200 && JSON.parse(body).ready === true;
        }, {
          message: `${url}/readyz to answer`,
          timeoutMs: 60_000,
          seen: () => timings,
        }));
      const user = (await podman.run(["exec", server, "id", "-u"])).stdout;
      equal(user, "10001", "the server does not run as root");
      const health = await podman.run(["healthcheck", "run", server], { check: false });
      equal(health.code, 0, `HEALTHCHECK: ${health.stdout} ${health.stderr}`);
      const read = async (file: string) =>
        (await podman.run(["exec", server, "cat", `/var/lib/oneoff/${file}`])).stdout;
      const token = await read("admin.token");
      const joinToken = await read("join.token");

      // The agent shares the host's network: port 5000 on the VM, the server on its published port.
      await podman.run([
        "run",
        "--detach",
        "--name",
        agent,
        "--network",
        "host",
        ...AGENT_PRIVILEGES,
        "--volume",
        `${agent}-data:/var/lib/oneoff-agent`,
        `${image}:agent`,
        "--server",
        url,
        "--join-token",
        joinToken,
        "--name",
        agent,
        "--attach",
        "127.0.0.1:0",
        "--data-dir",
        "/var/lib/oneoff-agent",
      ]);
      const env = { ONEOFF_SERVER: url, ONEOFF_TOKEN: token, HOME: dir };
      await seconds(timings, "agent online", () =>
        waitFor(async () => {
          const res = await cli(env, ["agents", "--json"]);
          return res.code === 0 &&
            JSON.parse(res.stdout).some((a: { name: string; state: string }) =>
              a.name === agent && a.state === "online"
            );
        }, {
          message: `agent ${agent} to be online`,
          timeoutMs: 60_000,
          seen: () => timings,
        }));
      // Enrolled with the join token, it waits for an admin, as docs/install.md says.
      const approved = await cli(env, ["agents", "approve", agent]);
      equal(approved.code, 0, approved.stderr);

      equal((await cli(env, ["apps", "create", "demo"])).code, 0);
      const deployed = await cli(env, ["deploy", "-a", "demo", `${ROOT}examples/demo`]);
      equal(deployed.code, 0, deployed.stderr);
      const started = await cli(env, [
        "run",
        "-a",
        "demo",
        "-d",
        "--",
        'echo "in the container: $APP $(id -u)"; ./bin/hello',
      ]);
      equal(started.code, 0, started.stderr);
      const label = /one-off-\d+/.exec(started.stdout)?.[0];
      ok(label, started.stdout);
      const logs = await seconds(timings, "one-off", () =>
        waitFor(async () => {
          const res = await cli(env, ["logs", "-a", "demo", "--filter", label]);
          return res.stdout.includes("in the container: demo 65534") && res.stdout;
        }, {
          message: `the output of ${label} in the logs`,
          timeoutMs: 30_000,
          seen: () => timings,
        }));
      const ps = await waitFor(async () => {
        const res = JSON.parse((await cli(env, ["ps", "-a", "demo", "--json"])).stdout) as {
          label: string;
          state: string;
          exit_code: number | null;
        }[];
        const run = res.find((r) => r.label === label);
        return run?.state === "exited" && run;
      }, { message: `${label} to exit` });
      equal(ps.exit_code, 0, logs);
      console.log(
        `image sizes (bytes): ${JSON.stringify(sizes)}; seconds: ${JSON.stringify(timings)}`,
      );

      // SIGTERM reaches the roles (PID 1 in their containers), which exit by themselves.
      for (const name of [agent, server]) {
        await podman.run(["stop", "--time", "30", name]);
        const code =
          (await podman.run(["inspect", "--format", "{{.State.ExitCode}}", name])).stdout;
        equal(code, "0", `${name} exit code`);
      }
    } finally {
      await podman.run(["rm", "--force", "--all"], { check: false });
      await podman.run(["volume", "rm", "--force", "--all"], { check: false });
      await podman.run(["rmi", "--force", "--all"], { check: false });
      // The overlay driver keeps its directory mounted (a private bind): unmount what is left.
      await unmountUnder(dir);
      await Deno.remove(dir, { recursive: true });
    }
  },
}));
