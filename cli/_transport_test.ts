import { equal, rejects, throws } from "node:assert/strict";
import { chooseVia, connectDirect, relayUrl } from "./_transport.ts";

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
