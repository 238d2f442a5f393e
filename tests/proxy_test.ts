/**
 * The server where operators put it: behind a real nginx on loopback
 * (deploy/nginx-proxy.conf), and serving HTTPS itself with a certificate
 * of its own CA.
 * @module
 */
import { cli } from "./_processes.ts";
import { equal, match } from "node:assert/strict";
import { startServer } from "../server/mod.ts";
import { parseTrustedProxies } from "../server/client_address.ts";
import { createLogger } from "../util/log.ts";
import { AgentProcess } from "./_agent_process.ts";
import { selfSignedCertificate } from "./_tls.ts";
import { needs, tool } from "./_tools.ts";
import { waitFor } from "./_wait.ts";

const SNIPPET = new URL("../deploy/nginx-proxy.conf", import.meta.url).pathname;
const silent = createLogger("test", { level: "silent" });

function closing(server: { close(): Promise<void> }): AsyncDisposable {
  return { [Symbol.asyncDispose]: () => server.close() };
}

function freePort(): number {
  using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  return listener.addr.port;
}

/** nginx on 127.0.0.1 in front of `upstream`, with the documented snippet. */
async function nginx(dir: string, upstream: string): Promise<AsyncDisposable & { url: string }> {
  const port = freePort();
  const conf = `${dir}/nginx.conf`;
  await Deno.writeTextFile(
    conf,
    `${Deno.uid() === 0 ? "user root;\n" : ""}worker_processes 1;
pid ${dir}/nginx.pid;
error_log ${dir}/error.log;
events { worker_connections 256; }
http {
  access_log off;
  client_body_temp_path ${dir}/body;
  proxy_temp_path ${dir}/proxy;
  fastcgi_temp_path ${dir}/fastcgi;
  uwsgi_temp_path ${dir}/uwsgi;
  scgi_temp_path ${dir}/scgi;
  map $http_upgrade $oneoff_connection { default upgrade; '' close; }
  upstream oneoff { server ${upstream}; }
  server {
    listen 127.0.0.1:${port};
    include ${SNIPPET};
  }
}
`,
  );
  const child = new Deno.Command(tool("nginx"), {
    args: ["-p", dir, "-c", conf, "-g", "daemon off;"],
    stdin: "null",
    stdout: "null",
    stderr: "piped",
  }).spawn();
  const url = `http://127.0.0.1:${port}`;
  await waitFor(async () => {
    try {
      const res = await fetch(`${url}/healthz`);
      await res.body?.cancel();
      return res.ok;
    } catch {
      return false;
    }
  }, { message: "nginx to proxy /healthz", seen: () => Deno.readTextFile(`${dir}/error.log`) });
  return {
    url,
    async [Symbol.asyncDispose]() {
      child.kill("SIGQUIT");
      await child.output();
    },
  };
}

/** One API call with curl from a chosen loopback address; its status. */
async function curlFrom(
  address: string,
  url: string,
  token: string,
  headers: string[] = [],
): Promise<number> {
  const out = await new Deno.Command(tool("curl"), {
    args: [
      "-s",
      "-o",
      "/dev/null",
      "-w",
      "%{http_code}",
      "--interface",
      address,
      "-H",
      `authorization: Bearer ${token}`,
      ...headers.flatMap((h) => ["-H", h]),
      url,
    ],
    stdout: "piped",
  }).output();
  return Number(new TextDecoder().decode(out.stdout));
}

Deno.test(
  needs(["nginx", "curl"], {
    name:
      "behind nginx, one client's bad tokens lock out that client only, and an agent joins through it",
    async fn() {
      const dir = await Deno.makeTempDir({ prefix: "oneoff-proxy-" });
      try {
        // Only nginx's own address is trusted: 127.0.0.2 and .3 are clients.
        const server = await startServer({
          http: "127.0.0.1:0",
          dataDir: `${dir}/server`,
          log: silent,
          config: { trustProxy: parseTrustedProxies("127.0.0.1") },
        });
        await using _closing = closing(server);
        const admin = server.newAdminToken!;
        const upstream = new URL(server.url).host;
        await using proxy = await nginx(dir, upstream);
        const whoami = `${proxy.url}/api/whoami`;

        const statuses: number[] = [];
        for (let i = 0; i < 11; i++) {
          // A client naming another in X-Forwarded-For is not believed.
          statuses.push(
            await curlFrom("127.0.0.2", whoami, `oo_wrong_${i}`, ["X-Forwarded-For: 127.0.0.3"]),
          );
        }
        equal(statuses.slice(0, 10).every((s) => s === 401), true, String(statuses));
        equal(statuses[10], 429, "the 11th bad token from 127.0.0.2 is limited");
        equal(await curlFrom("127.0.0.3", whoami, "oo_wrong_other"), 401, "127.0.0.3 is not");
        equal(await curlFrom("127.0.0.3", whoami, admin), 200);
        equal(await curlFrom("127.0.0.2", whoami, admin), 200, "a valid token is never refused");

        // The agents' WebSocket channel through the proxy.
        await using agent = new AgentProcess(proxy.url, server.joinToken, {
          name: "behind-nginx",
          dataDir: `${dir}/agent`,
          sandbox: "bwrap",
        });
        await waitFor(async () => {
          const res = await fetch(`${proxy.url}/api/agents`, {
            headers: { authorization: `Bearer ${admin}` },
          });
          const { agents } = await res.json() as { agents: { name: string; state: string }[] };
          return agents.some((a) => a.name === "behind-nginx" && a.state === "online");
        }, { message: "the agent to join through nginx", seen: () => agent.stderr });
      } finally {
        await Deno.remove(dir, { recursive: true });
      }
    },
  }),
);

Deno.test(
  needs(["openssl"], {
    name: "the API over TLS: the CLI and an agent's wss:// channel trust its CA through DENO_CERT",
    async fn() {
      const dir = await Deno.makeTempDir({ prefix: "oneoff-api-tls-" });
      try {
        const certificate = await selfSignedCertificate({ altNames: "IP:127.0.0.1" });
        await Deno.writeTextFile(`${dir}/cert.pem`, certificate.cert);
        const server = await startServer({
          http: "127.0.0.1:0",
          dataDir: `${dir}/server`,
          log: silent,
          tls: { cert: certificate.cert, key: certificate.key },
        });
        await using _closing = closing(server);
        match(server.url, /^https:\/\/127\.0\.0\.1:\d+$/);
        const env = {
          ONEOFF_SERVER: server.url,
          ONEOFF_TOKEN: server.newAdminToken!,
          HOME: dir,
          DENO_CERT: `${dir}/cert.pem`,
        };
        await using agent = new AgentProcess(server.url, server.joinToken, {
          name: "over-tls",
          dataDir: `${dir}/agent`,
          sandbox: "bwrap",
          env: { DENO_CERT: `${dir}/cert.pem` },
        });
        await waitFor(async () => {
          const res = await cli(env, ["agents", "--json"]);
          return res.code === 0 &&
            (JSON.parse(res.stdout) as { name: string; state: string }[]).some((a) =>
              a.name === "over-tls" && a.state === "online"
            );
        }, { message: "the agent to join over wss://", seen: () => agent.stderr });
        const { DENO_CERT: _, ...withoutCa } = env;
        const untrusted = await cli(withoutCa, ["whoami"]);
        equal(untrusted.code, 1);
        match(untrusted.stderr, /^oneoff: .*TLS certificate is not trusted.*DENO_CERT=\S+\n$/);
      } finally {
        await Deno.remove(dir, { recursive: true });
      }
    },
  }),
);
