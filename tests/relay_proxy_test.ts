/**
 * The relay through a real HTTP CONNECT proxy (Debian's tinyproxy on
 * loopback) with HTTPS_PROXY set, to a server speaking HTTPS with a
 * certificate the CLI trusts through DENO_CERT, and an agent whose port
 * 5000 nobody can reach. Killing the proxy breaks the live session: the
 * proxy was the relay's route.
 * @module
 */
import { equal, match } from "node:assert/strict";
import { cli, freePort, Proc, startServer, waitOnline } from "./_processes.ts";
import { selfSignedCertificate } from "./_tls.ts";
import { needs, tool } from "./_tools.ts";
import { waitFor } from "./_wait.ts";

const ROOT = new URL("..", import.meta.url).pathname;

Deno.test(needs(["tinyproxy", "openssl"], {
  name:
    "through HTTPS_PROXY (a real CONNECT proxy), the relay carries the session and its exit code",
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "oneoff-relay-proxy-" });
    try {
      const { cert, key } = await selfSignedCertificate({ altNames: "IP:127.0.0.1" });
      await Deno.writeTextFile(`${dir}/cert.pem`, cert);
      await Deno.writeTextFile(`${dir}/key.pem`, key);
      const proxyPort = freePort();
      await Deno.writeTextFile(
        `${dir}/tinyproxy.conf`,
        [
          `Port ${proxyPort}`,
          "Listen 127.0.0.1",
          "Timeout 600",
          `LogFile "${dir}/tinyproxy.log"`,
          "LogLevel Connect",
          `PidFile "${dir}/tinyproxy.pid"`,
          "Allow 127.0.0.1",
          "",
        ].join("\n"),
      );
      const proxy = new Deno.Command(tool("tinyproxy"), {
        args: ["-d", "-c", `${dir}/tinyproxy.conf`],
        stdout: "null",
        stderr: "null",
      }).spawn();
      try {
        const port = freePort();
        await using _server = await startServer(`${dir}/server`, port, [
          "--tls-cert",
          `${dir}/cert.pem`,
          "--tls-key",
          `${dir}/key.pem`,
        ]);
        const url = `https://127.0.0.1:${port}`;
        const trust = { DENO_CERT: `${dir}/cert.pem`, HOME: dir };
        // The agent dials the server directly; its port 5000 is advertised where nothing answers.
        await using _agent = new Proc([
          "agent",
          "--server",
          url,
          "--join-token",
          "join-me-please",
          "--name",
          "behind-nat",
          "--attach",
          "127.0.0.1:0",
          "--advertise",
          "192.0.2.1",
          "--data-dir",
          `${dir}/agent`,
        ], { env: trust });
        const token = (await Deno.readTextFile(`${dir}/server/admin.token`)).trim();
        const direct = { ...trust, ONEOFF_SERVER: url, ONEOFF_TOKEN: token };
        await waitOnline(direct, ["behind-nat"]);
        equal((await cli(direct, ["apps", "create", "demo"])).code, 0);
        const deployed = await cli(direct, ["deploy", "-a", "demo", `${ROOT}examples/demo`]);
        equal(deployed.code, 0, deployed.stderr);

        const proxied = {
          ...direct,
          HTTPS_PROXY: `http://127.0.0.1:${proxyPort}`,
          https_proxy: `http://127.0.0.1:${proxyPort}`,
          NO_PROXY: "",
          no_proxy: "",
        };
        const res = await cli(proxied, [
          "run",
          "-a",
          "demo",
          "--no-tty",
          "--via",
          "server",
          "--",
          "echo through-the-proxy; exit 5",
        ]);
        equal(res.code, 5, res.stderr);
        equal(res.stdout, "through-the-proxy\n");
        match(
          await Deno.readTextFile(`${dir}/tinyproxy.log`),
          new RegExp(`CONNECT 127\\.0\\.0\\.1:${port} `),
        );

        // A live session, then the proxy goes: the relay breaks, so it ran through the proxy.
        await using session = new Proc(
          ["run", "-a", "demo", "--no-tty", "--via", "server", "--", "cat"],
          { env: proxied, stdin: true },
        );
        await session.write("ping\n");
        await waitFor(() => session.stdout.includes("ping\n"), {
          message: "the echo through the proxied relay",
          seen: () => session.stderr,
        });
        proxy.kill("SIGKILL");
        await proxy.status;
        using client = Deno.createHttpClient({ caCerts: [cert] });
        await waitFor(async () => {
          const text = await (await fetch(`${url}/metrics`, { client })).text();
          return /oneoff_relays_total\{outcome="failed"\} [1-9]/.test(text);
        }, { message: "the relay to end with the proxy" });
      } finally {
        try {
          proxy.kill("SIGKILL");
        } catch { /* already gone */ }
        await proxy.status;
      }
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
}));
