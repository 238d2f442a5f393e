import { equal, ok, rejects, throws } from "node:assert/strict";
import { RelayConn } from "../protocol/mod.ts";
import { chooseVia, connectDirect, openAttachConn, relayUrl } from "./_transport.ts";

const target = {
  run: "one-off-7",
  app: "my app",
  host: "127.0.0.1",
  port: 1,
  tls: false,
  expires_at: "2026-12-01T00:00:00.000Z",
};

Deno.test("the relay URL is the API's run path as a WebSocket, http → ws and https → wss", () => {
  equal(
    relayUrl("https://oneoff.example.com/", target),
    "wss://oneoff.example.com/api/apps/my%20app/runs/one-off-7/relay",
  );
  equal(
    relayUrl("http://10.0.0.2:8080", target),
    "ws://10.0.0.2:8080/api/apps/my%20app/runs/one-off-7/relay",
  );
});

Deno.test("--via wins over ONEOFF_VIA, auto is the default, anything else is refused", () => {
  const saved = Deno.env.get("ONEOFF_VIA");
  try {
    Deno.env.delete("ONEOFF_VIA");
    equal(chooseVia(undefined), "auto");
    Deno.env.set("ONEOFF_VIA", "server");
    equal(chooseVia(undefined), "server");
    equal(chooseVia("direct"), "direct");
    Deno.env.set("ONEOFF_VIA", "smoke");
    throws(() => chooseVia(undefined), /Invalid ONEOFF_VIA "smoke": use direct, server or auto/);
  } finally {
    if (saved === undefined) Deno.env.delete("ONEOFF_VIA");
    else Deno.env.set("ONEOFF_VIA", saved);
  }
});

Deno.test("a direct connection to a closed port fails with a line that auto recognises", async () => {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  listener.close();
  await rejects(
    connectDirect({ ...target, port }, 1_500),
    /^CliError: Cannot connect to 127\.0\.0\.1:\d+: /,
  );
});

/** A port whose accept queue is full: a connection to it hangs as to a blackholed address. */
async function hangingPort(): Promise<{ port: number; close(): void }> {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  const conns: Deno.Conn[] = [];
  // Never accepted: once the backlog is full, the kernel drops further SYNs.
  // Three unanswered in a row, so that one merely slow on a busy machine does not count.
  for (let hung = 0; hung < 3;) {
    const attempt = Deno.connect({ hostname: "127.0.0.1", port });
    const conn = await Promise.race([
      attempt,
      new Promise<null>((resolve) => setTimeout(() => resolve(null), 100)),
    ]);
    if (conn === null) {
      hung++;
      attempt.then((c) => conns.push(c), () => {});
      continue;
    }
    hung = 0;
    conns.push(conn);
  }
  return {
    port,
    close() {
      for (const conn of conns) conn.close();
      listener.close();
    },
  };
}

Deno.test("auto gives up on a port that does not answer within its timeout and takes the relay", async () => {
  const hanging = await hangingPort();
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, (req) => {
    if (!new URL(req.url).pathname.endsWith("/api/apps/my%20app/runs/one-off-7/relay")) {
      return new Response("no", { status: 404 });
    }
    const { socket, response } = Deno.upgradeWebSocket(req);
    const conn = new RelayConn(socket);
    conn.write(new TextEncoder().encode("via-relay")).then(() => conn.close());
    return response;
  });
  try {
    const started = performance.now();
    const conn = await openAttachConn({ ...target, port: hanging.port }, {
      via: "auto",
      server: `http://127.0.0.1:${(server.addr as Deno.NetAddr).port}`,
      token: "t",
      silent: true,
      directTimeoutMs: 300,
    });
    const elapsed = performance.now() - started;
    ok(elapsed >= 300 && elapsed < 1_500, `fell back after ${elapsed} ms`);
    const buf = new Uint8Array(32);
    equal(new TextDecoder().decode(buf.subarray(0, (await conn.read(buf))!)), "via-relay");
    conn.close();
  } finally {
    hanging.close();
    await server.shutdown();
  }
});
