import { equal } from "node:assert/strict";
import { createHash } from "node:crypto";
import { AGENT_RELAY_PATH, RelayConn } from "../protocol/mod.ts";
import { createLogger } from "../util/log.ts";
import { type AttachedClient, AttachListener } from "./attach_listener.ts";
import { dialRelayBack } from "./relay_dial.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();
const log = createLogger("test", { level: "silent" });

function newSecret(): { secret: string; hash: string } {
  const secret = crypto.randomUUID().replaceAll("-", "");
  return { secret, hash: createHash("sha256").update(secret).digest("hex") };
}

async function readAll(conn: { read(b: Uint8Array): Promise<number | null> }): Promise<string> {
  let text = "";
  const buf = new Uint8Array(4096);
  while (true) {
    const n = await conn.read(buf).catch(() => null);
    if (n === null) return text;
    text += decoder.decode(buf.subarray(0, n));
  }
}

/**
 * A stand-in for the server's side of one relay: it checks the bearer, and
 * gives the test the far end of the agent's dial-back, as the CLI would use it.
 */
function relayServer(credential: string) {
  const far = Promise.withResolvers<RelayConn>();
  const paths: string[] = [];
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, (req) => {
    paths.push(new URL(req.url).pathname);
    if (req.headers.get("authorization") !== `Bearer ${credential}`) {
      return new Response("no", { status: 401 });
    }
    const { socket, response } = Deno.upgradeWebSocket(req);
    far.resolve(new RelayConn(socket));
    return response;
  });
  return {
    url: `http://127.0.0.1:${(server.addr as Deno.NetAddr).port}`,
    far: far.promise,
    paths,
    [Symbol.asyncDispose]: () => server.shutdown(),
  };
}

async function relayed(
  listener: AttachListener,
  text: string,
  clientAddress: string,
): Promise<string> {
  await using server = relayServer("cred");
  await dialRelayBack({ relayId: "r1", runId: "run", clientAddress }, {
    server: server.url,
    credential: () => "cred",
    listener,
    log,
  });
  const conn = await server.far;
  await conn.write(encoder.encode(text));
  await conn.closeWrite();
  const got = await readAll(conn);
  conn.close();
  await conn.ended;
  equal(server.paths[0], `${AGENT_RELAY_PATH}/r1`);
  return got;
}

Deno.test("a relayed connection goes through port 5000's handshake, from the client's address", async () => {
  await using listener = await AttachListener.listen({ hostname: "127.0.0.1", port: 0 });
  const { secret, hash } = newSecret();
  const attached: AttachedClient[] = [];
  listener.expect(hash, Date.now() + 60_000, (client) => {
    attached.push(client);
    (async () => {
      const rest = decoder.decode(client.initial) + await readAll(client.conn);
      await client.conn.write(encoder.encode(`echo:${rest}`));
      client.conn.close();
    })();
  });
  equal(await relayed(listener, `${secret}\nhello`, "203.0.113.9"), "echo:hello");
  equal(attached[0]?.remoteAddr, "203.0.113.9:0");
  equal(await relayed(listener, `${secret}\n`, "203.0.113.9"), "oneoff: secret already used\r\n");
});

Deno.test("relayed failures count against the client's address, not the server's", async () => {
  await using listener = await AttachListener.listen({
    hostname: "127.0.0.1",
    port: 0,
    maxFailuresPerMinute: 2,
  });
  const { secret, hash } = newSecret();
  listener.expect(hash, Date.now() + 60_000, (client) => {
    client.conn.write(encoder.encode("in")).finally(() => client.conn.close());
  });
  for (let i = 0; i < 2; i++) {
    equal(await relayed(listener, `wrong-${i}\n`, "203.0.113.9"), "oneoff: unknown secret\r\n");
  }
  const limited = "oneoff: too many failed attempts, try again later\r\n";
  equal(await relayed(listener, `${secret}\n`, "203.0.113.9"), limited);
  // Another client through the same server is not held back by that one.
  equal(await relayed(listener, `${secret}\n`, "198.51.100.7"), "in");
});
