import { cli } from "./_processes.ts";
import { deepEqual, equal, match, ok } from "node:assert/strict";
/**
 * docs/install.md's nginx configuration, taken from the page as written,
 * in front of a real `oneoff server`: TLS on loopback, the CLI through it,
 * an agent's WebSocket channel through it, attached and detached one-offs
 * across it.
 * @module
 */
import { needs, tool } from "./_tools.ts";
import { waitFor } from "./_wait.ts";

const ROOT = new URL("..", import.meta.url).pathname;
const MAIN = `${ROOT}main.ts`;
const decoder = new TextDecoder();

/** The `cat > /etc/nginx/sites-available/oneoff.conf` here-document of docs/install.md. */
async function documentedSite(): Promise<string> {
  const page = await Deno.readTextFile(`${ROOT}docs/install.md`);
  const match = /cat > \/etc\/nginx\/sites-available\/oneoff\.conf <<'EOF'\n([\s\S]*?)\nEOF\n/
    .exec(page);
  ok(match, "docs/install.md has the nginx site");
  return match[1]!;
}

/** The site on loopback ports, with the test's certificate and server; nothing else changed. */
function onLoopback(
  site: string,
  ports: { https: number; http: number; upstream: number },
  dir: string,
): string {
  const replace = (text: string, from: string, to: string) => {
    ok(text.includes(from), `the nginx site has "${from}"`);
    return text.replaceAll(from, to);
  };
  let out = site;
  out = replace(out, "listen 443 ssl http2;", `listen 127.0.0.1:${ports.https} ssl http2;`);
  out = replace(out, "listen 80;", `listen 127.0.0.1:${ports.http};`);
  out = replace(out, "server 127.0.0.1:8080;", `server 127.0.0.1:${ports.upstream};`);
  out = replace(out, "server_name oneoff.example.com;", "server_name localhost;");
  out = replace(out, "/etc/ssl/oneoff/fullchain.pem", `${dir}/cert.pem`);
  out = replace(out, "/etc/ssl/oneoff/privkey.pem", `${dir}/key.pem`);
  return out;
}

/** A CA and a certificate for localhost and 127.0.0.1 signed by it (Deno refuses a CA as a leaf). */
async function certificates(dir: string): Promise<void> {
  const openssl = async (args: string[]) => {
    const out = await new Deno.Command(tool("openssl"), { args, cwd: dir, stderr: "piped" })
      .output();
    equal(out.code, 0, decoder.decode(out.stderr));
  };
  await openssl(
    ["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"].concat(
      [
        "-nodes",
        "-subj",
        "/CN=oneoff test CA",
        "-days",
        "1",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
      ],
    ),
  );
  await openssl(
    ["req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"].concat(
      ["-subj", "/CN=localhost", "-keyout", "key.pem", "-out", "req.csr"],
    ),
  );
  await Deno.writeTextFile(
    `${dir}/ext.cnf`,
    "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n",
  );
  await openssl(["x509", "-req", "-in", "req.csr", "-CA", "ca.pem", "-CAkey", "ca.key"].concat(
    ["-CAcreateserial", "-days", "1", "-extfile", "ext.cnf", "-out", "cert.pem"],
  ));
}

function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { port } = listener.addr as Deno.NetAddr;
  listener.close();
  return port;
}

/** A long-running process whose output is collected as it comes. */
class Process implements AsyncDisposable {
  readonly #child: Deno.ChildProcess;
  readonly #done: Promise<void>;
  output = "";

  constructor(command: string, args: string[], env: Record<string, string> = {}) {
    this.#child = new Deno.Command(command, {
      args,
      env,
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const collect = async (stream: ReadableStream<Uint8Array>) => {
      for await (const text of stream.pipeThrough(new TextDecoderStream())) this.output += text;
    };
    this.#done = Promise.all([collect(this.#child.stdout), collect(this.#child.stderr)]).then(
      () => {},
    );
  }

  async [Symbol.asyncDispose](): Promise<void> {
    try {
      this.#child.kill("SIGTERM");
    } catch { /* already ended */ }
    await this.#child.status;
    await this.#done;
  }
}

Deno.test(needs(["nginx", "openssl", "root"], {
  name: "the nginx site of docs/install.md proxies the API and the agents' WebSocket over TLS",
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "oneoff-nginx-" });
    try {
      await certificates(dir);
      const ports = { https: freePort(), http: freePort(), upstream: freePort() };
      await using server = new Process(Deno.execPath(), [
        "run",
        "-A",
        "--quiet",
        MAIN,
        "server",
        "--auto-approve",
        "--http",
        `127.0.0.1:${ports.upstream}`,
        "--data-dir",
        `${dir}/server`,
      ]);
      await waitFor(
        () => fetch(`http://127.0.0.1:${ports.upstream}/healthz`).then((r) => r.ok, () => false),
        { message: "the server to answer", seen: () => server.output },
      );

      const site = onLoopback(await documentedSite(), ports, dir);
      // Debian's nginx.conf, cut down to what a test may run: its own paths,
      // no worker user switch, the site included as sites-enabled would.
      await Deno.writeTextFile(`${dir}/oneoff.conf`, site);
      await Deno.writeTextFile(
        `${dir}/nginx.conf`,
        [
          "user root;",
          "worker_processes 1;",
          `pid ${dir}/nginx.pid;`,
          `error_log ${dir}/error.log;`,
          "events { worker_connections 256; }",
          "http {",
          `  access_log ${dir}/access.log;`,
          `  client_body_temp_path ${dir}/body;`,
          `  proxy_temp_path ${dir}/proxy;`,
          `  fastcgi_temp_path ${dir}/fastcgi;`,
          `  uwsgi_temp_path ${dir}/uwsgi;`,
          `  scgi_temp_path ${dir}/scgi;`,
          `  include ${dir}/oneoff.conf;`,
          "}",
          "",
        ].join("\n"),
      );
      const nginx = tool("nginx");
      const check = await new Deno.Command(nginx, {
        args: ["-t", "-p", dir, "-c", `${dir}/nginx.conf`],
        stderr: "piped",
      }).output();
      equal(check.code, 0, decoder.decode(check.stderr));
      await using _proxy = new Process(nginx, [
        "-p",
        dir,
        "-c",
        `${dir}/nginx.conf`,
        "-g",
        "daemon off;",
      ]);
      const url = `https://localhost:${ports.https}`;
      // The agent and the CLI trust the test CA, as DENO_CERT in agent.env would make them.
      const tls = { DENO_CERT: `${dir}/ca.pem`, HOME: dir };
      using client = Deno.createHttpClient({ caCerts: [await Deno.readTextFile(`${dir}/ca.pem`)] });
      await waitFor(async () => {
        const res = await fetch(`${url}/healthz`, { client }).catch(() => undefined);
        return res?.status === 200 && (await res.json()).ok === true;
      }, { message: "nginx to forward to the server", seen: () => _proxy.output });

      const plain = await fetch(`http://127.0.0.1:${ports.http}/healthz`, { redirect: "manual" });
      await plain.body?.cancel();
      equal(plain.status, 301, "port 80 redirects to https");

      const token = (await Deno.readTextFile(`${dir}/server/admin.token`)).trim();
      const joinToken = (await Deno.readTextFile(`${dir}/server/join.token`)).trim();
      const env = { ...tls, ONEOFF_SERVER: url, ONEOFF_TOKEN: token };
      await using agent = new Process(Deno.execPath(), [
        "run",
        "-A",
        "--quiet",
        MAIN,
        "agent",
        "--server",
        url,
        "--join-token",
        joinToken,
        "--name",
        "behind-nginx",
        "--attach",
        "127.0.0.1:0",
        "--data-dir",
        `${dir}/agent`,
      ], tls);
      await waitFor(async () => {
        const res = await cli(env, ["agents", "--json"]);
        return res.code === 0 &&
          JSON.parse(res.stdout).some((a: { name: string; state: string }) =>
            a.name === "behind-nginx" && a.state === "online"
          );
      }, { message: "the agent to be online through nginx", seen: () => agent.output });
      match(agent.output, /wss:\/\/localhost:\d+\/agent\/channel/);

      equal((await cli(env, ["apps", "create", "demo"])).code, 0);
      const listed = await cli(env, ["apps", "list"]);
      match(listed.stdout, /demo/, listed.stderr);
      const deployed = await cli(env, ["deploy", "-a", "demo", `${ROOT}examples/demo`]);
      equal(deployed.code, 0, deployed.stderr);
      const attached = await cli(env, ["run", "-a", "demo", "--no-tty", "--", "echo via-nginx"]);
      deepEqual([attached.code, attached.stdout], [0, "via-nginx\n"], attached.stderr);
      // The relay: the CLI's WebSocket and the agent's dial-back both pass nginx.
      const relayed = await cli(env, [
        "run",
        "-a",
        "demo",
        "--no-tty",
        "--via",
        "server",
        "--",
        "echo relayed-via-nginx; exit 6",
      ]);
      deepEqual([relayed.code, relayed.stdout], [6, "relayed-via-nginx\n"], relayed.stderr);
      await waitFor(async () => {
        const log = await Deno.readTextFile(`${dir}/access.log`);
        return /"GET \/api\/apps\/demo\/runs\/[^/ ]+\/relay[^"]*" 101 /.test(log) &&
          /"GET \/agent\/relay\/[^"]*" 101 /.test(log);
      }, { message: "nginx to log both relay legs as upgraded (101) requests" });
      const detached = await cli(env, ["run", "-a", "demo", "-d", "--", "echo detached-via-nginx"]);
      equal(detached.code, 0, detached.stderr);
      await waitFor(async () => {
        const res = await cli(env, ["logs", "-a", "demo"]);
        return res.stdout.includes("detached-via-nginx");
      }, { message: "the detached run's output, shipped over the proxied channel" });

      // A watcher's stream passes nginx as it comes (not held in its buffers): the session's
      // output shows while the session still runs.
      {
        await using session = new Process(Deno.execPath(), [
          "run",
          "-A",
          "--quiet",
          MAIN,
          "run",
          "-a",
          "demo",
          "--no-tty",
          "--",
          "echo watched-via-nginx; sleep 60",
        ], env);
        await waitFor(() => session.output.includes("watched-via-nginx"), {
          message: "the watched session to start",
          seen: () => session.output,
        });
        await using watcher = new Process(Deno.execPath(), [
          "run",
          "-A",
          "--quiet",
          MAIN,
          "watch",
          "-a",
          "demo",
          "one-off-4",
        ], env);
        await waitFor(() => watcher.output.includes("watched-via-nginx"), {
          message: "the watcher to see the session through nginx",
          seen: () => watcher.output,
        });
        await waitFor(() => session.output.includes("is watching this session"), {
          message: "the session's user to be told",
          seen: () => session.output,
        });
      }

      // nginx logs a WebSocket when it closes: stop the agent first.
      await agent[Symbol.asyncDispose]();
      await waitFor(
        async () =>
          /"GET \/agent\/channel[^"]*" 101 /.test(await Deno.readTextFile(`${dir}/access.log`)),
        { message: "nginx to log the agent's channel as an upgraded (101) request" },
      );
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
}));
