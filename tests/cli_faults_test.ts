import { deepEqual, equal, match, ok } from "node:assert/strict";
/**
 * The CLI when the server, the agent or the network fails under it: the
 * roles as separate processes, killed with SIGKILL and restarted; a proxy
 * that drops the server's answer.
 * @module
 */
import { cli, freePort, Proc, startAgent, startServer, waitOnline } from "./_processes.ts";
import { needs } from "./_tools.ts";
import { waitFor } from "./_wait.ts";

const DEMO = new URL("../examples/demo", import.meta.url).pathname;

/** A server and one agent on a fixed port, with the demo app deployed. */
async function system(dir: string) {
  const port = freePort();
  const server = await startServer(`${dir}/server`, port);
  const agent = startAgent(`${dir}/agent`, port, "vm-1");
  const token = (await Deno.readTextFile(`${dir}/server/admin.token`)).trim();
  const env = { ONEOFF_SERVER: `http://127.0.0.1:${port}`, ONEOFF_TOKEN: token, HOME: dir };
  await waitOnline(env, ["vm-1"]);
  equal((await cli(env, ["apps", "create", "demo"])).code, 0);
  const deployed = await cli(env, ["deploy", "-a", "demo", DEMO]);
  equal(deployed.code, 0, deployed.stderr);
  return { port, server, agent, env };
}

function retryLines(stderr: string): string[] {
  return stderr.split("\n").filter((line) => line.startsWith("oneoff: lost the server"));
}

Deno.test(
  needs(["root"], {
    name: "an attached run exits with its code when the server is killed and restarted mid-session",
    async fn() {
      const dir = await Deno.makeTempDir({ prefix: "oneoff-cli-faults-" });
      try {
        const sys = await system(dir);
        await using _agent = sys.agent;
        let server = sys.server;
        try {
          await using run = new Proc(
            ["run", "-a", "demo", "--no-tty", "--", "echo started; sleep 4; echo done; exit 3"],
            { env: sys.env },
          );
          await waitFor(() => run.stdout.includes("started"), {
            message: "the session to run",
            seen: () => run.stderr,
          });
          server.kill("SIGKILL");
          await server.status();
          await waitFor(() => retryLines(run.stderr).length > 0, {
            message: "the CLI to say it lost the server",
            seen: () => run.stderr,
          });
          server = await startServer(`${dir}/server`, sys.port);
          const status = await run.status();
          // The end reaches the restarted server through the agent's
          // reconnect: that delivery is the agent's and the server's part.
          deepEqual(
            [status.code, run.stdout, retryLines(run.stderr).length],
            [3, "started\ndone\n", 1],
            run.stderr,
          );
          match(retryLines(run.stderr)[0]!, /^oneoff: lost the server \(.+\), retrying…$/);
        } finally {
          await server[Symbol.asyncDispose]();
        }
      } finally {
        await Deno.remove(dir, { recursive: true });
      }
    },
  }),
);

Deno.test(
  needs(["root"], {
    name:
      "an attached run that ends while the server is down exits with its code once the server is back",
    async fn() {
      const dir = await Deno.makeTempDir({ prefix: "oneoff-cli-faults-" });
      try {
        const sys = await system(dir);
        await using agent = sys.agent;
        let server = sys.server;
        try {
          await using run = new Proc(
            ["run", "-a", "demo", "--no-tty", "--", "read x; echo got-$x; exit 3"],
            { env: sys.env, stdin: true },
          );
          await waitFor(() => run.stderr.includes("Running one-off-1"), {
            message: "the session to start",
            seen: () => run.stderr,
          });
          server.kill("SIGKILL");
          await server.status();
          await run.write("in-the-dark\n");
          // The agent has seen the end and has nowhere to report it.
          await waitFor(() => agent.stderr.includes('"run ended"'), {
            message: "the run to end on the agent",
            seen: () => agent.stderr,
          });
          server = await startServer(`${dir}/server`, sys.port);
          const status = await run.status();
          // Depends on the agent keeping the end until the server acknowledges it.
          deepEqual(
            [status.code, run.stdout, retryLines(run.stderr).length],
            [3, "got-in-the-dark\n", 1],
            run.stderr,
          );
        } finally {
          await server[Symbol.asyncDispose]();
        }
      } finally {
        await Deno.remove(dir, { recursive: true });
      }
    },
  }),
);

Deno.test(
  needs(["root"], {
    name: "an attached CLI says at once that the connection to its agent was lost",
    async fn() {
      const dir = await Deno.makeTempDir({ prefix: "oneoff-cli-faults-" });
      try {
        const sys = await system(dir);
        await using _server = sys.server;
        await using agent = sys.agent;
        await using run = new Proc(
          ["run", "-a", "demo", "--no-tty", "--", "echo started; sleep 60"],
          { env: sys.env },
        );
        await waitFor(() => run.stdout.includes("started"), {
          message: "the session to run",
          seen: () => run.stderr,
        });
        agent.kill("SIGKILL");
        await agent.status();
        // Not the 30 s of silence until the server gives the run up.
        await waitFor(() => run.stderr.includes("the connection to the agent was lost"), {
          message: "the CLI to say the agent connection was lost",
          timeoutMs: 2_000,
          seen: () => run.stderr,
        });
        match(
          run.stderr,
          /oneoff: the connection to the agent was lost; waiting for the run's outcome…\n/,
        );
        ok(run.child.pid > 0);
      } finally {
        await Deno.remove(dir, { recursive: true });
      }
    },
  }),
);

/**
 * A proxy to `port` that, on the first connection carrying a POST, forwards
 * the request and drops the connection as the answer starts: the run is
 * created but the client never hears of it.
 */
function droppingProxy(port: number): { port: number; dropped: () => number; close(): void } {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  let dropped = 0;
  const pipe = async (from: Deno.Conn, to: Deno.Conn, drop: boolean) => {
    const buf = new Uint8Array(64 * 1024);
    try {
      while (true) {
        const n = await from.read(buf);
        if (n === null) break;
        if (drop) {
          dropped++;
          break;
        }
        let off = 0;
        while (off < n) off += await to.write(buf.subarray(off, n));
      }
    } catch { /* either side closed */ }
    for (const conn of [from, to]) {
      try {
        conn.close();
      } catch { /* already closed */ }
    }
  };
  (async () => {
    for await (const client of listener) {
      (async () => {
        const upstream = await Deno.connect({ hostname: "127.0.0.1", port });
        const first = new Uint8Array(64 * 1024);
        const n = await client.read(first);
        if (n === null) return client.close();
        const drop = dropped === 0 &&
          new TextDecoder().decode(first.subarray(0, n)).startsWith("POST ");
        await upstream.write(first.subarray(0, n));
        pipe(client, upstream, false);
        pipe(upstream, client, drop);
      })().catch(() => {});
    }
  })().catch(() => {});
  return {
    port: (listener.addr as Deno.NetAddr).port,
    dropped: () => dropped,
    close: () => listener.close(),
  };
}

Deno.test(
  needs(["root"], {
    name: "run -d retried after a dropped answer creates the run once",
    async fn() {
      const dir = await Deno.makeTempDir({ prefix: "oneoff-cli-faults-" });
      try {
        const sys = await system(dir);
        await using _server = sys.server;
        await using _agent = sys.agent;
        const proxy = droppingProxy(sys.port);
        try {
          const env = { ...sys.env, ONEOFF_SERVER: `http://127.0.0.1:${proxy.port}` };
          const res = await cli(env, ["run", "-a", "demo", "-d", "--json", "--", "echo once"]);
          equal(res.code, 0, res.stderr);
          equal(proxy.dropped(), 1, "the first answer was dropped");
          equal(retryLines(res.stderr).length, 1, res.stderr);
          const started = JSON.parse(res.stdout) as { label: string };
          const ps = await cli(sys.env, ["ps", "-a", "demo", "--json"]);
          const runs = JSON.parse(ps.stdout) as { label: string }[];
          deepEqual(runs.map((r) => r.label), [started.label], "one run, the one the CLI got");
        } finally {
          proxy.close();
        }
      } finally {
        await Deno.remove(dir, { recursive: true });
      }
    },
  }),
);
