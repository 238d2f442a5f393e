import { deepEqual, equal, ok, rejects } from "node:assert/strict";
import { waitFor } from "../tests/_wait.ts";
import { dialRelay, RELAY_MAX_MESSAGE, RelayConn } from "./relay.ts";

/** A server end and a client end of one real WebSocket on loopback. */
async function pair(
  window?: number,
): Promise<{ a: RelayConn; b: RelayConn; close(): Promise<void> }> {
  const accepted = Promise.withResolvers<RelayConn>();
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, (req) => {
    const { socket, response } = Deno.upgradeWebSocket(req);
    accepted.resolve(new RelayConn(socket, window ? { window } : {}));
    return response;
  });
  const ws = await dialRelay(`ws://127.0.0.1:${(server.addr as Deno.NetAddr).port}/`);
  const b = new RelayConn(ws, window ? { window } : {});
  const a = await accepted.promise;
  return {
    a,
    b,
    async close() {
      a.close();
      b.close();
      await Promise.all([a.ended, b.ended]);
      await server.shutdown();
    },
  };
}

async function readAll(conn: RelayConn): Promise<Uint8Array> {
  const parts: Uint8Array[] = [];
  const buf = new Uint8Array(100_000);
  while (true) {
    const n = await conn.read(buf);
    if (n === null) break;
    parts.push(buf.slice(0, n));
  }
  const out = new Uint8Array(parts.reduce((s, p) => s + p.length, 0));
  let at = 0;
  for (const p of parts) (out.set(p, at), at += p.length);
  return out;
}

async function writeAll(conn: RelayConn, bytes: Uint8Array): Promise<void> {
  let off = 0;
  while (off < bytes.length) off += await conn.write(bytes.subarray(off));
}

Deno.test("a relay connection carries bytes both ways and the half-close is EOF", async () => {
  const { a, b, close } = await pair();
  const data = crypto.getRandomValues(new Uint8Array(60_000));
  const got = readAll(a);
  await writeAll(b, data);
  await b.closeWrite();
  deepEqual(await got, data);
  // The other direction still works after the half-close.
  await writeAll(a, new TextEncoder().encode("reply"));
  const buf = new Uint8Array(16);
  equal(new TextDecoder().decode(buf.subarray(0, (await b.read(buf))!)), "reply");
  await close();
});

Deno.test("a writer stops at the reader's window until the reader reads", async () => {
  const window = 4 * RELAY_MAX_MESSAGE;
  const { a, b, close } = await pair(window);
  let written = 0;
  const chunk = new Uint8Array(RELAY_MAX_MESSAGE);
  const writer = (async () => {
    while (written < 10 * window) written += await b.write(chunk);
  })();
  await new Promise((r) => setTimeout(r, 200));
  equal(written, window, "no byte beyond the window before the reader reads");
  ok(a.bufferedBytes <= window);
  const got = new Uint8Array(window * 10);
  let read = 0;
  while (read < got.length) read += (await a.read(got.subarray(read)))!;
  await writer;
  equal(written, 10 * window);
  await close();
});

Deno.test("a failed leg's reason reaches the peer's read, after the data sent before it", async () => {
  const { a, b, close } = await pair();
  await writeAll(b, new Uint8Array([1, 2, 3]));
  b.fail("The agent's side of the relay ended: gone");
  const buf = new Uint8Array(8);
  equal(await a.read(buf), 3);
  await rejects(a.read(buf), /The agent's side of the relay ended: gone/);
  equal((await a.ended).clean, false);
  await close();
});

Deno.test("a peer that sends beyond its credit is cut off with a reason", async () => {
  const accepted = Promise.withResolvers<RelayConn>();
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, (req) => {
    const { socket, response } = Deno.upgradeWebSocket(req);
    accepted.resolve(new RelayConn(socket, { window: 1024 }));
    return response;
  });
  const raw = await dialRelay(`ws://127.0.0.1:${(server.addr as Deno.NetAddr).port}/`);
  const reasons: string[] = [];
  raw.onmessage = (e) => typeof e.data === "string" && reasons.push(e.data);
  const closed = new Promise<CloseEvent>((r) => raw.onclose = r);
  const conn = await accepted.promise;
  raw.send(new Uint8Array(2048));
  const event = await closed;
  equal(event.code, 4000);
  ok(reasons.some((r) => r.includes("beyond its credit")), reasons.join());
  ok(conn.bufferedBytes === 0);
  await server.shutdown();
});

Deno.test("a peer that grants more credit than a window is cut off, and bad control messages too", async () => {
  const cases: [string, string][] = [
    [JSON.stringify({ type: "credit", bytes: 1e15 }), "credit beyond the window"],
    [JSON.stringify({ type: "credit", bytes: 0 }), "not positive"],
    ["not json", "Malformed relay control message"],
    [JSON.stringify({ type: "launch" }), "Malformed relay control message"],
  ];
  for (const [message, why] of cases) {
    const accepted = Promise.withResolvers<RelayConn>();
    const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, (req) => {
      const { socket, response } = Deno.upgradeWebSocket(req);
      accepted.resolve(new RelayConn(socket));
      return response;
    });
    const raw = await dialRelay(`ws://127.0.0.1:${(server.addr as Deno.NetAddr).port}/`);
    const reasons: string[] = [];
    raw.onmessage = (e) => typeof e.data === "string" && reasons.push(e.data);
    const closed = new Promise<CloseEvent>((r) => raw.onclose = r);
    const conn = await accepted.promise;
    raw.send(message);
    const event = await closed;
    equal(event.code, 4000, message);
    ok(reasons.some((r) => r.includes(why)), `${message}: ${reasons.join()}`);
    // Its writes fail with the reason rather than fill a socket the peer does not read.
    await rejects(conn.write(new Uint8Array(10)));
    await server.shutdown();
  }
});

Deno.test("a quiet leg sends keepalives its reader never sees, and stops them when closed", async () => {
  const accepted = Promise.withResolvers<RelayConn>();
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, (req) => {
    const { socket, response } = Deno.upgradeWebSocket(req);
    accepted.resolve(new RelayConn(socket, { keepaliveMs: 30 }));
    return response;
  });
  const raw = await dialRelay(`ws://127.0.0.1:${(server.addr as Deno.NetAddr).port}/`);
  const texts: string[] = [];
  raw.onmessage = (e) => typeof e.data === "string" && texts.push(e.data);
  const conn = await accepted.promise;
  await waitFor(() => texts.filter((t) => t.includes("keepalive")).length >= 2, {
    message: "two keepalives",
    seen: () => texts,
  });
  // The far end's reader: a keepalive is no data and no EOF.
  const peer = new RelayConn(raw);
  raw.send(JSON.stringify({ type: "keepalive" }));
  raw.send(new Uint8Array([7]));
  const buf = new Uint8Array(4);
  equal(await conn.read(buf), 1);
  equal(buf[0], 7);
  peer.close();
  await conn.ended;
  await server.shutdown();
});
