import { deepEqual, match, ok, rejects } from "node:assert/strict";
import { type SandboxKind } from "../../protocol/mod.ts";
import { detectCgroups, RunCgroup } from "./_cgroups.ts";
import { SANDBOX_UID } from "./mod.ts";
import { collect, Fixture, PATH, pidsRunning, TEST_LIMITS, TextReader } from "./_testing.ts";
import { waitFor } from "../../tests/_wait.ts";
import { missing, type Need, needs } from "../../tests/_tools.ts";
import {
  ABSTRACT_LISTENER,
  loopbackListener,
  OutsideHost,
  PROBE,
  probeResults,
} from "./_testing_net.ts";

const CGROUPS = missing(["root"]).length === 0 ? await detectCgroups() : { reason: "not root" };
const LIMITED = !("reason" in CGROUPS);

function sandboxTests(kind: SandboxKind): void {
  // Network "isolated", the default, runs pasta.
  const base: Need[] = kind === "runc" ? ["root", "runc", "pasta"] : ["pasta"];
  const test = (
    name: string,
    fn: (fx: Fixture) => Promise<void>,
    options: { needs?: Need[] } = {},
  ) =>
    Deno.test(needs([...base, ...options.needs ?? []], {
      name: `${kind}: ${name}`,
      async fn() {
        await using fx = await Fixture.create(kind);
        await fn(fx);
      },
    }));

  test("the root holds /usr and a few /etc files, and nothing else of the host", async (fx) => {
    const { stdout, status } = await fx.run(
      `ls /; test -x /bin/sh && echo sh-ok; touch /usr/x 2>/dev/null || echo usr-ro; touch /x 2>/dev/null || echo root-ro
      grep -q '^app:x:65534:65534:' /etc/passwd && echo passwd-ok; test -e /etc/resolv.conf && echo resolv-ok
      for p in /root /etc/shadow /work "$WORK" "$SLUG" /var /home; do test -e "$p" && echo "visible $p"; done; true`,
      { env: { PATH, WORK: fx.workDir, SLUG: fx.slugDir } },
    );
    deepEqual(status.code, 0);
    const lines = stdout.trim().split("\n");
    const top = lines.filter((line) => /^[a-z0-9]+$/.test(line));
    const allowed = [
      "app",
      "bin",
      "dev",
      "etc",
      "lib",
      "lib32",
      "lib64",
      "libx32",
      "proc",
      "sbin",
      "tmp",
      "usr",
    ];
    for (const name of top) ok(allowed.includes(name), `Unexpected /${name}`);
    for (const word of ["sh-ok", "usr-ro", "root-ro", "passwd-ok"]) {
      ok(lines.includes(word), stdout);
    }
    if (await Deno.stat("/etc/resolv.conf").then(() => true, () => false)) {
      ok(lines.includes("resolv-ok"));
    }
    deepEqual(lines.filter((line) => line.startsWith("visible")), []);
  });

  test("/app is the slug with a writable layer that vanishes with the run", async (fx) => {
    const first = await fx.run(
      "echo new > new.txt && mkdir d && echo changed > owned.txt && cat new.txt owned.txt",
    );
    deepEqual(first.stdout, "new\nchanged\n");
    deepEqual(first.status.code, 0);
    const second = await fx.run("ls -A /app; cat /app/owned.txt");
    deepEqual(second.stdout, "hello.txt\nowned.txt\nmine\n");
    const names = (await Array.fromAsync(Deno.readDir(fx.slugDir))).map((e) => e.name).sort();
    deepEqual(names, ["hello.txt", "owned.txt"]);
    deepEqual(await Deno.readTextFile(`${fx.slugDir}/owned.txt`), "mine\n");
  });

  test("/tmp is a tmpfs of the run's size: filling it fails with ENOSPC", async (fx) => {
    const { stdout, stderr } = await fx.run(
      "echo ok > /tmp/small && cat /tmp/small; dd if=/dev/zero of=/tmp/fill bs=64k count=128",
      { limits: { ...TEST_LIMITS, tmpBytes: 1024 * 1024 } },
    );
    deepEqual(stdout, "ok\n");
    match(stderr, /No space left on device/);
  });

  test("uploads appear read-only in /tmp/uploads", async (fx) => {
    const { stdout } = await fx.run(
      "cat /tmp/uploads/data.csv; touch /tmp/uploads/x 2>/dev/null || echo read-only",
      {
        uploadsDir: fx.uploadsDir,
      },
    );
    deepEqual(stdout, "a,b\n1,2\nread-only\n");
  });

  test("what the run writes to /tmp/downloads is in the downloads dir on the host after its exit", async (fx) => {
    const downloadsDir = `${fx.workDir}/downloads-test`;
    await Deno.mkdir(downloadsDir, { mode: 0o700 });
    if (Deno.uid() === 0) await Deno.chown(downloadsDir, SANDBOX_UID, SANDBOX_UID);
    // Uploads and downloads at once, on the default isolated network: the most descriptors the wrapper opens.
    const { stdout, status } = await fx.run(
      "cat /tmp/uploads/data.csv > /tmp/downloads/copy.csv && ln /etc/passwd /tmp/downloads/h 2>/dev/null || echo no-link",
      { uploadsDir: fx.uploadsDir, downloadsDir },
    );
    deepEqual([status.code, stdout], [0, "no-link\n"]);
    deepEqual(await Deno.readTextFile(`${downloadsDir}/copy.csv`), "a,b\n1,2\n");
    deepEqual((await Array.fromAsync(Deno.readDir(downloadsDir))).map((e) => e.name), ["copy.csv"]);
  });

  test("the process runs as uid 65534 without capabilities, in new namespaces", async (fx) => {
    const { stdout } = await fx.run(
      `id -u; id -g; grep -E '^(CapEff|NoNewPrivs):' /proc/self/status
      for n in pid ipc uts mnt user cgroup net; do echo "$n $(readlink /proc/self/ns/$n)"; done`,
    );
    const lines = stdout.trim().split("\n");
    deepEqual(lines.slice(0, 4).map((line) => line.replace(/\s+/g, " ")), [
      "65534",
      "65534",
      "CapEff: 0000000000000000",
      "NoNewPrivs: 1",
    ]);
    for (const line of lines.slice(4)) {
      const [name, inside] = line.split(" ");
      const host = await Deno.readLink(`/proc/self/ns/${name}`);
      ok(inside !== host, `namespace ${name} is shared with the host`);
    }
  });

  test("network none leaves the run only a loopback device", async (fx) => {
    const { stdout } = await fx.run(
      "readlink /proc/self/ns/net; tail -n +3 /proc/net/dev | cut -d: -f1",
      {
        network: "none",
      },
    );
    const [ns, ...devices] = stdout.trim().split("\n");
    ok(ns !== await Deno.readLink("/proc/self/ns/net"));
    deepEqual(devices.map((d) => d.trim()), ["lo"]);
  });

  test(
    "isolated: the host's loopback, abstract sockets and connections are out of reach",
    async (fx) => {
      await using tcp = loopbackListener();
      const name = `oneoff-host-${crypto.randomUUID()}`;
      await using host = spawnListener(name, 0);
      await host.ready;
      const probes = [
        `tcp:127.0.0.1:${tcp.addr.port}`,
        `abstract:${name}`,
        `proc:${tcp.addr.port}`,
      ];
      const { stdout } = await fx.run(`python3 -c '${PROBE}' ${probes.join(" ")}`);
      deepEqual(probeResults(stdout), Object.fromEntries(probes.map((p) => [p, "refused"])));
      // The same probes in host mode reach both: they are real.
      const shared = await fx.run(`python3 -c '${PROBE}' ${probes.join(" ")}`, { network: "host" });
      deepEqual(probeResults(shared.stdout), Object.fromEntries(probes.map((p) => [p, "reached"])));
    },
    { needs: ["python3"] },
  );

  test(
    "isolated: another run's abstract sockets and loopback listeners are out of reach",
    async (fx) => {
      const name = `oneoff-run-${crypto.randomUUID()}`;
      const port = 20000 + Math.floor(Math.random() * 20000);
      const other = await fx.sandbox.spawn(
        fx.spec(`python3 -c '${ABSTRACT_LISTENER}' ${name} ${port}`),
      );
      try {
        const out = new TextReader(other.stdout);
        await out.waitFor("ready");
        const probes = [`abstract:${name}`, `tcp:127.0.0.1:${port}`, `proc:${port}`];
        const { stdout } = await fx.run(`python3 -c '${PROBE}' ${probes.join(" ")}`);
        deepEqual(probeResults(stdout), Object.fromEntries(probes.map((p) => [p, "refused"])));
      } finally {
        other.kill("SIGKILL");
        await other.status;
      }
    },
    { needs: ["python3"] },
  );

  test("isolated: a TCP service outside the host is reachable", async (fx) => {
    await using outside = await OutsideHost.create();
    const probe = `tcp:${outside.address}:${outside.port}`;
    const { stdout } = await fx.run(`python3 -c '${PROBE}' ${probe}`);
    deepEqual(probeResults(stdout), { [probe]: "reached" });
  }, { needs: ["root", "ip", "python3"] });

  test("isolated: a chosen port of the host's loopback is reachable, no other", async (fx) => {
    await using allowed = loopbackListener();
    await using other = loopbackListener();
    const probes = [`tcp:127.0.0.1:${allowed.addr.port}`, `tcp:127.0.0.1:${other.addr.port}`];
    const { stdout } = await fx.run(`python3 -c '${PROBE}' ${probes.join(" ")}`, {
      hostPorts: [allowed.addr.port],
    });
    deepEqual(probeResults(stdout), { [probes[0]!]: "reached", [probes[1]!]: "refused" });
  }, { needs: ["python3"] });

  test("open files per process are bounded by the run's size", async (fx) => {
    const { stdout } = await fx.run("ulimit -Sn; ulimit -Hn");
    deepEqual(stdout, `${TEST_LIMITS.openFiles}\n${TEST_LIMITS.openFiles}\n`);
  });

  test(
    "the seccomp filter refuses nested user namespaces, io_uring, keyrings and the rest",
    async (fx) => {
      const { stdout, stderr } = await fx.run(`python3 -c '${SYSCALL_PROBE}'`);
      deepEqual(Object.fromEntries(stdout.trim().split("\n").map((l) => l.split(" "))), {
        unshare_newuser: "EPERM",
        clone_newuser: "EPERM",
        clone3: "ENOSYS",
        io_uring_setup: "ENOSYS",
        keyctl: "EPERM",
        bpf: "EPERM",
        perf_event_open: "EPERM",
        ptrace: "EPERM",
        mount: "EPERM",
        setns: "EPERM",
        personality_no_aslr: "EPERM",
        personality_linux32: "ok",
        threads: "ok",
      }, stderr);
    },
    { needs: ["python3"] },
  );

  test("no descriptor the agent inherited crosses into the sandbox", async (fx) => {
    const canary = `${fx.workDir}/../canary`;
    await Deno.writeTextFile(canary, "canary-secret\n");
    const agent = new Deno.Command("/bin/sh", {
      args: [
        "-c",
        'exec 9<"$1"; shift; exec "$@"',
        "sh",
        canary,
        Deno.execPath(),
        "run",
        "-A",
        `--config=${new URL("../../deno.json", import.meta.url).pathname}`,
        new URL("./_testing_agent.ts", import.meta.url).pathname,
        kind,
        fx.workDir,
        fx.slugDir,
        crypto.randomUUID(),
        "ls /proc/self/fd; cat /proc/self/fd/9 2>/dev/null; cat <&9 2>/dev/null; true",
      ],
      stdout: "piped",
      stderr: "piped",
    });
    const { stdout, stderr, success } = await agent.output();
    const text = new TextDecoder().decode(stdout);
    ok(success, new TextDecoder().decode(stderr));
    ok(!text.includes("canary-secret"), text);
    // 0-2, and 3: the directory ls reads.
    deepEqual(text.trim().split("\n").filter((fd) => Number(fd) > 3), [], text);
  });

  test("no host path of the agent shows in the sandbox's mount table or process files", async (fx) => {
    // The fixture's top dir holds the work dir, the slug and the uploads; its name is split
    // in two so that the command line itself does not hold it.
    const top = fx.workDir.split("/").at(-2)!;
    const [head, tail] = [top.slice(0, 8), top.slice(8)];
    const { stdout, status } = await fx.run(
      `t="${head}"; t="$t${tail}"; for f in /proc/self/mountinfo /proc/1/mountinfo /proc/self/cgroup \
        /proc/1/cgroup /proc/1/environ /proc/self/environ /proc/self/mounts; do
        test -r "$f" || continue; grep -q -F "$t" "$f" && echo "leak $f"; done; echo checked`,
      { uploadsDir: fx.uploadsDir },
    );
    deepEqual(status.code, 0);
    deepEqual(stdout, "checked\n");
  });

  test("host processes are invisible", async (fx) => {
    // Builtins only: every pid listed is one of the sandbox's.
    const { stdout } = await fx.run("for p in /proc/[0-9]*; do echo ${p#/proc/}; done");
    const pids = stdout.trim().split("\n").map(Number);
    ok(pids.length <= 3 && pids.every((pid) => pid < 10), `pids: ${pids}`);
  });

  test("the environment is exactly the spec's", async (fx) => {
    const odd = "a b\nc=d 'q' \"dq\" $x ünï";
    const hostOnly = Object.keys(Deno.env.toObject()).find((name) =>
      !["PATH", "HOME", "PWD"].includes(name)
    );
    const { stdout } = await fx.run("/usr/bin/env -0", { env: { PATH, HOME: "/app", ODD: odd } });
    const env = Object.fromEntries(
      stdout.split("\0").filter(Boolean).map((
        kv,
      ) => [kv.split("=")[0], kv.slice(kv.indexOf("=") + 1)]),
    );
    deepEqual(env.ODD, odd);
    deepEqual(env.HOME, "/app");
    for (const name of Object.keys(env)) {
      ok(["PATH", "HOME", "ODD", "PWD"].includes(name), `unexpected ${name}`);
    }
    if (hostOnly) deepEqual(env[hostOnly], undefined);
  });

  test("the exit status is the shell's, and 128+N for signal N", async (fx) => {
    deepEqual((await fx.run("exit 3")).status, { code: 3, signal: null, oomKilled: false });
    deepEqual((await fx.run("kill -9 $$")).status, {
      code: 137,
      signal: "SIGKILL",
      oomKilled: false,
    });
    const process = await fx.sandbox.spawn(fx.spec("echo started; sleep 1000; echo not reached"));
    const out = new TextReader(process.stdout);
    await out.waitFor("started");
    process.kill("SIGTERM");
    const status = await process.status;
    await out.done;
    deepEqual(status.code, 143);
    deepEqual(status.signal, "SIGTERM");
    deepEqual(out.text, "started\n");
  });

  test("no-TTY stdio is binary-safe, stdin close is EOF and stderr is separate", async (fx) => {
    const input = new Uint8Array(256 * 1024).map((_, i) => (i * 7 + (i >> 8)) & 0xff);
    const process = await fx.sandbox.spawn(fx.spec("cat; echo err >&2"));
    const outputs = Promise.all([
      new Response(process.stdout).bytes(),
      new Response(process.stderr!).text(),
    ]);
    const writer = process.stdin.getWriter();
    await writer.write(input);
    await writer.close();
    const [stdout, stderr] = await outputs;
    deepEqual(stdout.length, input.length);
    ok(stdout.every((byte, i) => byte === input[i]), "stdout differs from stdin");
    deepEqual(stderr, "err\n");
    deepEqual((await process.status).code, 0);
  });

  test("a TTY run gets a real terminal of the requested size, and resizes", async (fx) => {
    const process = await fx.sandbox.spawn(fx.spec(
      `tty; stty size; while read x; do s=$(stty size); echo "size $s"; [ "$s" = "40 100" ] && exit 7; done`,
      { tty: { cols: 91, rows: 27 } },
    ));
    deepEqual(process.stderr, null);
    const out = new TextReader(process.stdout);
    await out.waitFor("27 91");
    // bwrap shows the terminal as /dev/console; runc makes one in the container's devpts.
    match(out.text, /^\/dev\/(pts\/\d+|console)\r?$/m);
    process.resize(100, 40);
    const writer = process.stdin.getWriter();
    // runc passes a resize on asynchronously: ask until it shows.
    const asking = setInterval(
      () => writer.write(new TextEncoder().encode("\n")).catch(() => {}),
      200,
    );
    try {
      await out.waitFor("size 40 100");
    } finally {
      clearInterval(asking);
    }
    deepEqual((await process.status).code, 7);
    await out.done;
  });

  test("TIOCSTI cannot type into the terminal", async (fx) => {
    const script = `import fcntl, termios; fcntl.ioctl(0, termios.TIOCSTI, b"x")`;
    const process = await fx.sandbox.spawn(fx.spec(
      `python3 -c '${script}' 2>/dev/null && echo INJECTED || echo REFUSED`,
      { tty: { cols: 80, rows: 24 } },
    ));
    const { stdout } = await collect(process);
    match(stdout, /REFUSED/);
    ok(!stdout.includes("INJECTED"), stdout);
  }, { needs: ["python3"] });

  test("spawn refuses a bad run id, a bad variable name and a missing slug", async (fx) => {
    await rejects(() => fx.sandbox.spawn(fx.spec("true", { runId: "../escape" })), /run id/);
    await rejects(
      () => fx.sandbox.spawn(fx.spec("true", { env: { "A=B": "x" } })),
      /"A=B" is invalid/,
    );
    await rejects(
      () => fx.sandbox.spawn(fx.spec("true", { slugDir: `${fx.slugDir}/nope` })),
      /slug dir/,
    );
    deepEqual(await Array.fromAsync(Deno.readDir(`${fx.workDir}/runs`)), []);
  });

  test("memory past the limit is OOM-killed inside, and reported", async (fx) => {
    const { status } = await fx.run(`python3 -c 'x = b"x" * (256 * 1024 * 1024)'`, {
      limits: { ...TEST_LIMITS, memoryBytes: 48 * 1024 * 1024 },
    });
    deepEqual(status, { code: 137, signal: "SIGKILL", oomKilled: true });
  }, { needs: ["cgroups", "python3"] });

  test("a fork loop stops at pids.max and the run still ends", async (fx) => {
    const { stdout, status } = await fx.run(
      `(i=0; while [ $i -lt 100 ]; do sleep 600 & i=$((i+1)); done) 2>/dev/null
      n=0; for p in /proc/[0-9]*; do n=$((n+1)); done; echo "procs $n"`,
      { limits: { ...TEST_LIMITS, pids: 24 } },
    );
    const procs = Number(/procs (\d+)/.exec(stdout)?.[1]);
    ok(procs > 1 && procs <= 24, stdout);
    deepEqual(status.code, 0);
  }, { needs: ["cgroups"] });

  test("limits are written to the run's cgroup, and it is removed after the run", async (fx) => {
    if ("reason" in CGROUPS) return;
    const spec = fx.spec("echo started; sleep 1000");
    const process = await fx.sandbox.spawn(spec);
    const out = new TextReader(process.stdout);
    await out.waitFor("started");
    const rel = `oneoff/${spec.runId}`;
    const { roots, version } = CGROUPS;
    const read = (root: string, file: string) =>
      Deno.readTextFile(`${root}/${rel}/${file}`).then((t) => t.trim());
    if (version === 1) {
      deepEqual(
        await read(roots.memory, "memory.limit_in_bytes"),
        String(TEST_LIMITS.memoryBytes),
      );
      deepEqual(await read(roots.pids, "pids.max"), String(TEST_LIMITS.pids));
      deepEqual(await read(roots.cpu, "cpu.cfs_quota_us"), String(TEST_LIMITS.cpuMillis * 100));
    } else {
      deepEqual(await read(roots.memory, "memory.max"), String(TEST_LIMITS.memoryBytes));
      deepEqual(await read(roots.pids, "pids.max"), String(TEST_LIMITS.pids));
      deepEqual(await read(roots.cpu, "cpu.max"), `${TEST_LIMITS.cpuMillis * 100} 100000`);
    }
    process.kill("SIGKILL");
    await process.status;
    for (const root of CGROUPS.allRoots) {
      ok(
        !(await Deno.stat(`${root}/${rel}`).then(() => true, () => false)),
        `${root}/${rel} remains`,
      );
    }
    ok(!(await Deno.stat(`${fx.workDir}/runs/${spec.runId}`).then(() => true, () => false)));
  }, { needs: ["cgroups"] });

  test("the sandbox dies with the agent", async (fx) => {
    const marker = `1000.${crypto.getRandomValues(new Uint32Array(1))[0]}`;
    const runId = crypto.randomUUID();
    const agent = new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "-A",
        `--config=${new URL("../../deno.json", import.meta.url).pathname}`,
        new URL("./_testing_agent.ts", import.meta.url).pathname,
        kind,
        fx.workDir,
        fx.slugDir,
        runId,
        `exec sleep ${marker}`,
      ],
      stdout: "null",
      stderr: "inherit",
    }).spawn();
    try {
      await waitFor(async () => (await pidsRunning(["sleep", marker])).length > 0, {
        message: "the sandboxed sleep to run",
      });
      agent.kill("SIGKILL");
      await agent.status;
      let left: number[] = [];
      await waitFor(async () => (left = await pidsRunning(["sleep", marker])).length === 0, {
        message: "the sandboxed sleep to be gone",
        seen: () => ({ pids: left }),
      });
      // The run's pasta too, named by its namespace (see _network.ts).
      await waitFor(async () => (left = await pidsMentioning(runId)).length === 0, {
        message: "the run's pasta to be gone",
        seen: () => ({ pids: left }),
      });
    } finally {
      try {
        agent.kill("SIGKILL");
      } catch { /* already dead */ }
      await agent.status;
      // The killed agent could not clean up: its run's cgroups are ours to remove.
      if (LIMITED && !("reason" in CGROUPS)) {
        await RunCgroup.of(CGROUPS, runId).remove({ withRunc: true });
      }
    }
  });
}

/** Host pids whose command line mentions `text` (a run id). */
async function pidsMentioning(text: string): Promise<number[]> {
  const pids: number[] = [];
  for await (const entry of Deno.readDir("/proc")) {
    if (!/^\d+$/.test(entry.name) || Number(entry.name) === Deno.pid) continue;
    const cmdline = await Deno.readTextFile(`/proc/${entry.name}/cmdline`).catch(() => "");
    if (cmdline.includes(text) && cmdline.includes("pasta")) pids.push(Number(entry.name));
  }
  return pids;
}

/** Calls each refused system call from inside a sandbox and prints its errno name (or ok). */
const SYSCALL_PROBE = `import ctypes, errno, os, platform, threading
libc = ctypes.CDLL(None, use_errno=True)
NR = {"x86_64": {"keyctl": 250, "bpf": 321, "perf_event_open": 298, "clone": 56},
      "aarch64": {"keyctl": 219, "bpf": 280, "perf_event_open": 241, "clone": 220}}[platform.machine()]
NR.update({"io_uring_setup": 425, "clone3": 435})
def show(name, rc):
    e = ctypes.get_errno()
    print(name, "ok" if rc >= 0 else errno.errorcode.get(e, str(e)), flush=True)
show("unshare_newuser", libc.unshare(0x10000000))
show("clone_newuser", libc.syscall(NR["clone"], 0x10000000 | 17, 0, 0, 0, 0))
show("clone3", libc.syscall(NR["clone3"], 0, 0))
params = ctypes.create_string_buffer(120)
show("io_uring_setup", libc.syscall(NR["io_uring_setup"], 8, params))
show("keyctl", libc.syscall(NR["keyctl"], 0, -3, 0))
show("bpf", libc.syscall(NR["bpf"], 0, 0, 0))
show("perf_event_open", libc.syscall(NR["perf_event_open"], 0, 0, -1, -1, 0))
show("ptrace", libc.ptrace(0, 0, 0, 0))
show("mount", libc.mount(b"none", b"/tmp", b"tmpfs", 0, None))
fd = os.open("/proc/self/ns/uts", os.O_RDONLY)
show("setns", libc.setns(fd, 0))
show("personality_no_aslr", libc.personality(0x0040000))
show("personality_linux32", libc.personality(0x0008))
t = threading.Thread(target=lambda: None); t.start(); t.join(); print("threads ok")
`;

/** A host python3 listening on abstract socket `@name` (and TCP `port`, 0 = any), as another tenant's service would. */
function spawnListener(name: string, port: number) {
  const child = new Deno.Command("/usr/bin/python3", {
    args: ["-c", ABSTRACT_LISTENER, name, String(port)],
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const out = new TextReader(child.stdout);
  return {
    ready: out.waitFor("ready"),
    async [Symbol.asyncDispose]() {
      child.kill("SIGKILL");
      await child.status;
      await out.done;
    },
  };
}

sandboxTests("bwrap");
sandboxTests("runc");

Deno.test(needs(["root"], {
  name: "bwrap without root still sandboxes, and warns that limits are not enforced",
  async fn() {
    const home = await Deno.makeTempDir({ prefix: "oneoff-unprivileged-home-" });
    try {
      await Deno.chown(home, SANDBOX_UID, SANDBOX_UID);
      const output = await new Deno.Command("/usr/bin/setpriv", {
        args: [
          ...[
            `--reuid=${SANDBOX_UID}`,
            `--regid=${SANDBOX_UID}`,
            "--clear-groups",
            "--",
            Deno.execPath(),
          ],
          ...[
            "run",
            "-A",
            "--no-config",
            "--quiet",
            new URL("./_testing_unprivileged.ts", import.meta.url).pathname,
          ],
        ],
        clearEnv: true,
        env: { PATH, HOME: home, DENO_DIR: `${home}/deno`, TMPDIR: home },
        cwd: home,
      }).output();
      const stderr = new TextDecoder().decode(output.stderr);
      ok(output.success, stderr);
      const seen = JSON.parse(new TextDecoder().decode(output.stdout));
      deepEqual(seen.warnings.length, 1);
      match(
        seen.warnings[0],
        /Not running as root: memory, process and CPU limits are not enforced/,
      );
      deepEqual(seen.stdout.replace(/\s+/g, " ").trim(), "65534 CapEff: 0000000000000000 new");
      match(seen.stderr, /No space left on device/);
      deepEqual(seen.status, { code: 1, signal: null, oomKilled: false });
      deepEqual(seen.slug, ["hello.txt"]);
      deepEqual(seen.runs, []);
    } finally {
      await Deno.remove(home, { recursive: true });
    }
  },
}));
