/**
 * Network fixtures for the sandbox tests: listeners on the host's loopback
 * and on an abstract unix socket, a probe to run inside a sandbox, and an
 * "outside" host: a network namespace of the test's own, joined to the host
 * by a veth pair with addresses from 198.18.0.0/15 (the benchmarking range),
 * which exist only inside that pair.
 * @module
 */

/** A TCP listener on the host's 127.0.0.1 that greets every connection with `hello`. */
export function loopbackListener(): Deno.TcpListener & AsyncDisposable {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  (async () => {
    for await (const conn of listener) {
      await conn.write(new TextEncoder().encode("hello\n")).catch(() => {});
      conn.close();
    }
  })().catch(() => {});
  return Object.assign(listener, {
    [Symbol.asyncDispose]: () => Promise.resolve(listener.close()),
  });
}

/** A python3 program: abstract unix socket `@NAME` and TCP `[ADDRESS]:PORT` (127.0.0.1), greeting too; prints `ready`. */
export const ABSTRACT_LISTENER = `import socket, sys
s = socket.socket(socket.AF_UNIX); s.bind("\\0" + sys.argv[1]); s.listen()
t = socket.socket(); t.bind((sys.argv[3] if len(sys.argv) > 3 else "127.0.0.1", int(sys.argv[2])))
t.listen()
print("ready", flush=True)
import select
while True:
    for r in select.select([s, t], [], [])[0]:
        c, _ = r.accept(); c.send(b"hello\\n"); c.close()
`;

/**
 * A python3 program run inside a sandbox: for each argument `tcp:HOST:PORT`,
 * `abstract:NAME` or `proc:PORT`, prints `<arg> reached` or `<arg> refused`
 * (`proc`: the port listening in this namespace's /proc/net/tcp).
 */
export const PROBE = `import socket, sys
for arg in sys.argv[1:]:
    kind, _, rest = arg.partition(":")
    try:
        if kind == "tcp":
            host, port = rest.rsplit(":", 1)
            c = socket.create_connection((host, int(port)), timeout=5)
        elif kind == "abstract":
            c = socket.socket(socket.AF_UNIX); c.settimeout(5); c.connect("\\0" + rest)
        else:
            port = ":%04X " % int(rest)
            rows = open("/proc/net/tcp").read() + open("/proc/net/tcp6").read()
            print(arg, "reached" if port in rows else "refused", flush=True)
            continue
        print(arg, "reached" if c.recv(16) == b"hello\\n" else "refused", flush=True)
    except OSError:
        print(arg, "refused", flush=True)
`;

/** The probe's answers, by argument. */
export function probeResults(stdout: string): Record<string, string> {
  return Object.fromEntries(
    stdout.trim().split("\n").filter(Boolean).map((line) => line.split(" ") as [string, string]),
  );
}

async function ip(...args: string[]): Promise<void> {
  const out = await new Deno.Command("ip", { args, stderr: "piped", stdout: "null" }).output();
  if (!out.success) {
    throw new Error(`ip ${args.join(" ")} failed: ${new TextDecoder().decode(out.stderr)}`);
  }
}

/** A network namespace with a greeting TCP listener at `address:port`, reached from the host over a veth pair. */
export class OutsideHost {
  readonly address: string;
  readonly port = 7777;
  readonly #name: string;
  readonly #listener: Deno.ChildProcess;

  private constructor(name: string, address: string, listener: Deno.ChildProcess) {
    this.#name = name;
    this.address = address;
    this.#listener = listener;
  }

  /**
   * Creates the namespace, the veth pair and the listener (by default the
   * greeter; else a python3 `program` given ID PORT ADDRESS that prints
   * `ready`); resolves once it listens.
   */
  static async create(program: string = ABSTRACT_LISTENER): Promise<OutsideHost> {
    const n = crypto.getRandomValues(new Uint8Array(1))[0]! % 250 + 1;
    const id = crypto.randomUUID().slice(0, 8);
    const name = `oneoff-test-${id}`;
    const [hostSide, nsSide] = [`oo${id}h`, `oo${id}n`];
    const [hostAddr, nsAddr] = [`198.18.${n}.1`, `198.18.${n}.2`];
    await ip("netns", "add", name);
    try {
      await ip("link", "add", hostSide, "type", "veth", "peer", "name", nsSide, "netns", name);
      await ip("addr", "add", `${hostAddr}/30`, "dev", hostSide);
      await ip("link", "set", hostSide, "up");
      await ip("-n", name, "addr", "add", `${nsAddr}/30`, "dev", nsSide);
      await ip("-n", name, "link", "set", nsSide, "up");
      await ip("-n", name, "link", "set", "lo", "up");
      const listener = new Deno.Command("ip", {
        args: [
          "netns",
          "exec",
          name,
          "/usr/bin/python3",
          "-c",
          program,
          id,
          "7777",
          "0.0.0.0",
        ],
        stdout: "piped",
        stderr: "inherit",
      }).spawn();
      const reader = listener.stdout.pipeThrough(new TextDecoderStream()).getReader();
      const first = await reader.read();
      reader.releaseLock();
      if (!first.value?.includes("ready")) throw new Error("The outside listener did not start");
      return new OutsideHost(name, nsAddr, listener);
    } catch (err) {
      await ip("netns", "del", name).catch(() => {});
      throw err;
    }
  }

  async [Symbol.asyncDispose](): Promise<void> {
    try {
      this.#listener.kill("SIGKILL");
    } catch { /* gone */ }
    await this.#listener.status;
    await this.#listener.stdout.cancel().catch(() => {});
    // Deleting the namespace removes the veth pair with it.
    await ip("netns", "del", this.#name);
  }
}
