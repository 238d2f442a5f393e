import { selfSignedCertificate } from "../tests/_tls.ts";
import { deepEqual, equal, match, ok, rejects, throws } from "node:assert/strict";
import { createHash } from "node:crypto";
import {
  type AttachConn,
  type AttachedClient,
  AttachListener,
  type AttachListenerOptions,
} from "./attach_listener.ts";
import { pemFingerprint } from "../protocol/mod.ts";
import { waitFor } from "../tests/_wait.ts";
import { needs } from "../tests/_tools.ts";
import { createLogger } from "../util/log.ts";
import net from "node:net";

const HOST = "127.0.0.1";
const encoder = new TextEncoder();
const decoder = new TextDecoder();

function newSecret(): { secret: string; hash: string } {
  const secret = Array.from(crypto.getRandomValues(new Uint8Array(32)))
    .map((b) => b.toString(16).padStart(2, "0")).join("");
  return { secret, hash: createHash("sha256").update(secret).digest("hex") };
}

function listen(options: Partial<AttachListenerOptions> = {}): Promise<AttachListener> {
  return AttachListener.listen({ hostname: HOST, port: 0, ...options });
}

/** Reads until EOF; a reset ends the read like EOF. */
async function readAll(conn: AttachConn): Promise<string> {
  const chunks: Uint8Array[] = [];
  const buf = new Uint8Array(4096);
  while (true) {
    const n = await conn.read(buf).catch(() => null);
    if (n === null) break;
    chunks.push(buf.slice(0, n));
  }
  return decoder.decode(new Uint8Array(chunks.flatMap((c) => [...c])));
}

/** Connects, sends `bytes`, returns all the listener wrote back. */
async function exchange(port: number, bytes: string | Uint8Array): Promise<string> {
  const conn = await Deno.connect({ hostname: HOST, port });
  try {
    if (bytes.length > 0) {
      await conn.write(typeof bytes === "string" ? encoder.encode(bytes) : bytes);
    }
    return await readAll(conn);
  } finally {
    conn.close();
  }
}

/** Connections waiting in the kernel's accept queue of the 127.0.0.1 listener on `port`. */
async function acceptQueue(port: number): Promise<number> {
  // In /proc/net/tcp a listening socket's rx_queue is its accept queue length.
  const local = `0100007F:${port.toString(16).toUpperCase().padStart(4, "0")}`;
  for (const line of (await Deno.readTextFile("/proc/net/tcp")).split("\n").slice(1)) {
    const [, address, , state, queues] = line.trim().split(/\s+/);
    if (address === local && state === "0A") return parseInt(queues!.split(":")[1]!, 16);
  }
  throw new Error(`No listening socket on ${HOST}:${port} in /proc/net/tcp`);
}

/** A waiter that answers its client with a fixed text and closes. */
function answering(
  text: string,
): { clients: AttachedClient[]; onAttach: (c: AttachedClient) => void } {
  const clients: AttachedClient[] = [];
  return {
    clients,
    onAttach: (client) => {
      clients.push(client);
      client.conn.write(encoder.encode(text)).finally(() => client.conn.close());
    },
  };
}

/** A waiter that reads the client's whole input, then echoes it back prefixed and closes. */
function echoing(): (client: AttachedClient) => void {
  return (client) => {
    (async () => {
      const input = decoder.decode(client.initial) + await readAll(client.conn);
      await client.conn.write(encoder.encode(`echo:${input}`));
      client.conn.close();
    })();
  };
}

async function run(cmd: string, args: string[], stdin: string): Promise<string> {
  const child = new Deno.Command(cmd, { args, stdin: "piped", stdout: "piped", stderr: "null" })
    .spawn();
  const writer = child.stdin.getWriter();
  await writer.write(encoder.encode(stdin));
  await writer.close();
  const out = await child.output();
  return decoder.decode(out.stdout);
}

Deno.test("attach hands over the connection with the bytes after the newline", async () => {
  await using listener = await listen();
  const { secret, hash } = newSecret();
  const got = Promise.withResolvers<AttachedClient>();
  listener.expect(hash, Date.now() + 60_000, got.resolve);
  const conn = await Deno.connect({ hostname: HOST, port: listener.port });
  await conn.write(encoder.encode(`${secret}\nhello`));
  const client = await got.promise;
  equal(decoder.decode(client.initial), "hello");
  match(client.remoteAddr, /^127\.0\.0\.1:\d+$/);
  await client.conn.write(encoder.encode("process output"));
  client.conn.close();
  // Nothing of the agent's own precedes the process's output.
  equal(await readAll(conn), "process output");
  conn.close();
});

Deno.test("the handshake line's prefix chooses raw, framed or resume; the secret is the same table's", async () => {
  await using listener = await listen();
  const lines = (
    s: string,
  ) => [s, `oneoff-framed/1 ${s}`, `oneoff-resume/1 ${s} 1234`, `oneoff-resume/1 ${s} -`];
  const seen: AttachedClient["handshake"][] = [];
  for (const line of lines("x")) {
    const { secret, hash } = newSecret();
    const got = Promise.withResolvers<AttachedClient>();
    const use = line.startsWith("oneoff-resume/1") ? "resume" : "first";
    listener.expect(hash, Date.now() + 60_000, got.resolve, use);
    const conn = await Deno.connect({ hostname: HOST, port: listener.port });
    await conn.write(encoder.encode(`${line.replace("x", secret)}\n`));
    const client = await got.promise;
    seen.push(client.handshake);
    client.conn.close();
    conn.close();
  }
  deepEqual(seen, [
    { mode: "raw" },
    { mode: "framed" },
    { mode: "resume", outOffset: 1234 },
    { mode: "resume", outOffset: null },
  ]);
});

Deno.test("a secret in the wrong kind of line is refused with one line and stays usable", async () => {
  await using listener = await listen();
  const first = newSecret();
  const resume = newSecret();
  const run = answering("started");
  const session = answering("resumed");
  listener.expect(first.hash, Date.now() + 60_000, run.onAttach);
  listener.expect(resume.hash, Date.now() + 60_000, session.onAttach, "resume");
  const refused = "oneoff: secret given in the wrong kind of handshake line\r\n";
  // A run's own secret never resumes; a resume secret never starts (raw or framed).
  equal(await exchange(listener.port, `oneoff-resume/1 ${first.secret} 0\n`), refused);
  equal(await exchange(listener.port, `${resume.secret}\n`), refused);
  equal(await exchange(listener.port, `oneoff-framed/1 ${resume.secret}\n`), refused);
  deepEqual([run.clients.length, session.clients.length], [0, 0]);
  // Neither was used up by the wrong line: the right one still attaches.
  equal(await exchange(listener.port, `oneoff-framed/1 ${first.secret}\n`), "started");
  equal(await exchange(listener.port, `oneoff-resume/1 ${resume.secret} -\n`), "resumed");
});

Deno.test("attach accepts a secret line ending in CRLF", async () => {
  await using listener = await listen();
  const { secret, hash } = newSecret();
  const waiter = answering("ok");
  listener.expect(hash, Date.now() + 60_000, waiter.onAttach);
  equal(await exchange(listener.port, `${secret}\r\n`), "ok");
  equal(waiter.clients[0]?.initial.length, 0);
});

Deno.test(needs(["nc"], {
  name: "attach works with nc, stdin half-close reaching the process",
  async fn() {
    await using listener = await listen();
    const { secret, hash } = newSecret();
    listener.expect(hash, Date.now() + 60_000, echoing());
    const out = await run("nc", ["-N", HOST, String(listener.port)], `${secret}\nline1\nline2\n`);
    equal(out, "echo:line1\nline2\n");
  },
}));

Deno.test("attach refuses an unknown secret with one line", async () => {
  await using listener = await listen();
  listener.expect(newSecret().hash, Date.now() + 60_000, () => ok(false, "must not attach"));
  equal(await exchange(listener.port, `${newSecret().secret}\n`), "oneoff: unknown secret\r\n");
  equal(await exchange(listener.port, "\n"), "oneoff: unknown secret\r\n");
});

Deno.test("attach rejects a reused secret", async () => {
  await using listener = await listen();
  const { secret, hash } = newSecret();
  const waiter = answering("first");
  listener.expect(hash, Date.now() + 60_000, waiter.onAttach);
  equal(await exchange(listener.port, `${secret}\n`), "first");
  equal(await exchange(listener.port, `${secret}\n`), "oneoff: secret already used\r\n");
  equal(waiter.clients.length, 1);
});

Deno.test("attach refuses an expired or cancelled secret, then forgets it", async () => {
  let now = 1_000_000;
  await using listener = await listen({ now: () => now, maxFailuresPerMinute: 100 });
  const late = newSecret();
  const cancelled = newSecret();
  const used = newSecret();
  listener.expect(late.hash, now + 1_000, () => ok(false, "must not attach"));
  listener.expect(cancelled.hash, now + 60_000, () => ok(false, "must not attach"));
  listener.expect(used.hash, now + 60_000, answering("used").onAttach);
  equal(await exchange(listener.port, `${used.secret}\n`), "used");
  listener.cancel(cancelled.hash);
  listener.cancel(used.hash);
  now += 1_000;
  const expired = "oneoff: attach window expired\r\n";
  equal(await exchange(listener.port, `${late.secret}\n`), expired);
  equal(await exchange(listener.port, `${cancelled.secret}\n`), expired);
  equal(await exchange(listener.port, `${used.secret}\n`), "oneoff: secret already used\r\n");
  now += 11 * 60_000;
  equal(await exchange(listener.port, `${late.secret}\n`), "oneoff: unknown secret\r\n");
});

Deno.test("attach times out a client that does not finish its secret line", async () => {
  await using listener = await listen({ handshakeTimeoutMs: 100 });
  const { secret, hash } = newSecret();
  listener.expect(hash, Date.now() + 60_000, () => ok(false, "must not attach"));
  const expected = "oneoff: timed out waiting for the secret\r\n";
  equal(await exchange(listener.port, secret), expected);
  equal(await exchange(listener.port, ""), expected);
});

Deno.test("attach refuses a 10 KB line without a newline", async () => {
  await using listener = await listen();
  const out = await exchange(listener.port, "a".repeat(10 * 1024));
  equal(out, "oneoff: secret line too long\r\n");
});

Deno.test("attach allows 256 bytes of line, newline included", async () => {
  await using listener = await listen();
  equal(await exchange(listener.port, `${"a".repeat(255)}\n`), "oneoff: unknown secret\r\n");
  equal(await exchange(listener.port, `${"a".repeat(256)}\n`), "oneoff: secret line too long\r\n");
});

Deno.test(needs(["nc"], {
  name: "attach refuses a secret cut short by EOF, with nc",
  async fn() {
    await using listener = await listen();
    const { secret, hash } = newSecret();
    listener.expect(hash, Date.now() + 60_000, () => ok(false, "must not attach"));
    const out = await run("nc", ["-N", HOST, String(listener.port)], secret);
    equal(out, "oneoff: secret line must end with a newline\r\n");
  },
}));

Deno.test("attach rate-limits failed attempts per address, even with the right secret", async () => {
  let now = 5_000_000;
  await using listener = await listen({ now: () => now, maxFailuresPerMinute: 3 });
  const { secret, hash } = newSecret();
  const waiter = answering("in");
  listener.expect(hash, now + 3_600_000, waiter.onAttach);
  for (let i = 0; i < 3; i++) {
    equal(await exchange(listener.port, `wrong-${i}\n`), "oneoff: unknown secret\r\n");
  }
  const limited = "oneoff: too many failed attempts, try again later\r\n";
  equal(await exchange(listener.port, `${secret}\n`), limited);
  equal(await exchange(listener.port, ""), limited);
  now += 61_000;
  equal(await exchange(listener.port, `${secret}\n`), "in");
});

Deno.test("attach evicts the oldest pending handshake beyond the cap and serves the newcomer", async () => {
  await using listener = await listen({ maxPendingHandshakes: 5, handshakeTimeoutMs: 60_000 });
  const { secret, hash } = newSecret();
  listener.expect(hash, Date.now() + 60_000, answering("ok").onAttach);
  const idle: Deno.Conn[] = [];
  for (let i = 0; i < 5; i++) {
    idle.push(await Deno.connect({ hostname: HOST, port: listener.port }));
  }
  await waitFor(() => listener.pendingHandshakes === 5, { message: "5 pending handshakes" });
  try {
    equal(await exchange(listener.port, `${secret}\n`), "ok");
    // The oldest idle one made room: closed without a word, long before its timeout.
    equal(await readAll(idle[0]!), "");
    equal(listener.pendingHandshakes, 4);
  } finally {
    for (const conn of idle) conn.close();
  }
});

/** Opens `count` idle TCP connections to `port` from the local address `from`. */
async function flood(port: number, from: string, count: number): Promise<net.Socket[]> {
  const sockets: net.Socket[] = [];
  for (let i = 0; i < count; i++) {
    const socket = net.connect({ host: HOST, port, localAddress: from });
    socket.on("error", () => {});
    sockets.push(socket);
    if (i % 100 === 99) await new Promise((resolve) => socket.once("connect", resolve));
  }
  return sockets;
}

Deno.test("attach serves a legitimate client while another address holds 2,000 idle connections", async () => {
  await using listener = await listen({ handshakeTimeoutMs: 60_000 });
  const { secret, hash } = newSecret();
  listener.expect(hash, Date.now() + 60_000, answering("served").onAttach);
  const sockets = await flood(listener.port, "127.0.0.2", 2_000);
  try {
    await waitFor(async () => await acceptQueue(listener.port) === 0, {
      message: "the listener to accept the flood",
    });
    // The flood holds at most its per-address share: the rest were evicted, oldest first.
    ok(listener.pendingHandshakes <= 16, `pending: ${listener.pendingHandshakes}`);
    equal(await exchange(listener.port, `${secret}\n`), "served");
  } finally {
    for (const socket of sockets) socket.destroy();
  }
});

Deno.test("attach logs a refused secret with its address, never the secret", async () => {
  const lines: string[] = [];
  const log = createLogger("attach", { sink: (line) => lines.push(line), level: "info" });
  await using listener = await listen({ log });
  const guess = "f".repeat(64);
  match(await exchange(listener.port, `${guess}\n`), /^oneoff: /);
  await waitFor(() => lines.length === 1, { message: "one log line" });
  const entry = JSON.parse(lines[0]!);
  equal(entry.msg, "attach refused");
  equal(entry.address, HOST);
  ok(!lines[0]!.includes(guess));
});

Deno.test(needs(["nc"], {
  name: "attach survives clients that reset or vanish mid-handshake",
  async fn() {
    await using listener = await listen({ maxFailuresPerMinute: 100 });
    const { secret, hash } = newSecret();
    listener.expect(hash, Date.now() + 60_000, answering("still here").onAttach);
    for (let i = 0; i < 5; i++) {
      // Unread refusal at close makes the client's kernel answer with a reset.
      const conn = await Deno.connect({ hostname: HOST, port: listener.port });
      await conn.write(encoder.encode("x".repeat(10_000)));
      conn.close();
      const half = await Deno.connect({ hostname: HOST, port: listener.port });
      await half.write(encoder.encode("abc"));
      half.close();
    }
    await run("nc", ["-z", HOST, String(listener.port)], "");
    equal(await exchange(listener.port, `${secret}\n`), "still here");
  },
}));

Deno.test("attach close ends pending handshakes but not attached clients", async () => {
  const listener = await listen();
  const { secret, hash } = newSecret();
  const got = Promise.withResolvers<AttachedClient>();
  listener.expect(hash, Date.now() + 60_000, got.resolve);
  const attached = await Deno.connect({ hostname: HOST, port: listener.port });
  await attached.write(encoder.encode(`${secret}\n`));
  const client = await got.promise;
  const pending = await Deno.connect({ hostname: HOST, port: listener.port });
  await listener.close();
  equal(await readAll(pending), "");
  pending.close();
  await rejects(Deno.connect({ hostname: HOST, port: listener.port }));
  await client.conn.write(encoder.encode("after close"));
  client.conn.close();
  equal(await readAll(attached), "after close");
  attached.close();
  await listener.close();
});

Deno.test("attach rejects malformed and duplicate secret hashes", async () => {
  await using listener = await listen();
  const { hash } = newSecret();
  throws(() => listener.expect("abc", Date.now(), () => {}), /not 64 hex digits/);
  listener.expect(hash, Date.now() + 60_000, () => {});
  throws(() => listener.expect(hash, Date.now() + 60_000, () => {}), /already registered/);
});

Deno.test("attach listen explains a port already in use and bad options", async () => {
  await using first = await listen();
  await rejects(listen({ port: first.port }), /Cannot listen for attach on "127\.0\.0\.1:\d+"/);
  await rejects(listen({ maxPendingHandshakes: 0 }), /Invalid maxPendingHandshakes "0"/);
  await rejects(listen({ handshakeTimeoutMs: -1 }), /Invalid handshakeTimeoutMs "-1"/);
  await rejects(listen({ maxFailuresPerMinute: 0 }), /Invalid maxFailuresPerMinute "0"/);
});

Deno.test(needs(["openssl", "ncat"], {
  name: "attach over TLS works with ncat --ssl and openssl s_client",
  async fn() {
    const { cert, key, opensslFingerprint } = await selfSignedCertificate();
    await using listener = await listen({ tls: { cert, key } });
    equal(listener.tls, true);
    equal(listener.tlsFingerprint, opensslFingerprint);
    equal(await pemFingerprint(cert), opensslFingerprint);
    const { secret, hash } = newSecret();
    listener.expect(hash, Date.now() + 60_000, echoing());
    const port = String(listener.port);
    const refused = await run(
      "openssl",
      ["s_client", "-quiet", "-connect", `${HOST}:${port}`],
      "nope\n",
    );
    equal(refused, "oneoff: unknown secret\r\n");
    // Plain text at a TLS port is a broken handshake, not a crash.
    await exchange(listener.port, "GET / HTTP/1.0\r\n\r\n");
    equal(await run("ncat", ["--ssl", HOST, port], `${secret}\nhello`), "echo:hello");
  },
}));

Deno.test(needs(["openssl"], {
  name: "attach over TLS times out a client that handshakes but sends nothing",
  async fn() {
    const { cert, key } = await selfSignedCertificate();
    await using listener = await listen({ tls: { cert, key }, handshakeTimeoutMs: 200 });
    const child = new Deno.Command("openssl", {
      args: ["s_client", "-quiet", "-connect", `${HOST}:${listener.port}`],
      stdin: "piped",
      stdout: "piped",
      stderr: "null",
    }).spawn();
    // stdin stays open: the client is idle, not finished.
    const out = await new Response(child.stdout).text();
    await child.stdin.close();
    await child.status;
    equal(out, "oneoff: timed out waiting for the secret\r\n");
  },
}));

Deno.test(needs(["openssl"], {
  name: "attach close does not wait for a TLS client that never starts its handshake",
  async fn() {
    const { cert, key } = await selfSignedCertificate();
    // Far beyond the bound below: a close that waited for the handshake to time out fails.
    const listener = await listen({ tls: { cert, key }, handshakeTimeoutMs: 60_000 });
    const idle = await Deno.connect({ hostname: HOST, port: listener.port });
    try {
      // The listener holds the idle client (not the kernel's accept queue) when close starts.
      await waitFor(async () => await acceptQueue(listener.port) === 0, {
        message: "the listener to accept the idle client",
      });
      let timer: ReturnType<typeof setTimeout> | undefined;
      const bound = new Promise<string>((resolve) => {
        timer = setTimeout(() => resolve("still closing after 2000 ms"), 2_000);
      });
      const outcome = await Promise.race([listener.close().then(() => "closed"), bound]);
      clearTimeout(timer);
      equal(outcome, "closed");
    } finally {
      idle.close();
    }
  },
}));

Deno.test(needs(["openssl"], {
  name: "attach over TLS closes connections that never start their handshake at the deadline",
  async fn() {
    const { cert, key } = await selfSignedCertificate();
    // Long enough for all 300 connections to be open at once on a loaded
    // machine before the first one's deadline: the count below needs them all.
    const handshakeTimeoutMs = 3_000;
    await using listener = await listen({
      tls: { cert, key },
      handshakeTimeoutMs,
      maxPendingPerAddress: 1_000,
      maxPendingHandshakes: 1_000,
    });
    const idle: Deno.Conn[] = [];
    for (let i = 0; i < 300; i++) {
      idle.push(await Deno.connect({ hostname: HOST, port: listener.port }));
    }
    try {
      await waitFor(() => listener.pendingHandshakes === 300, { message: "300 pending" });
      // The listener holds one accepted descriptor per idle client.
      equal(await acceptedSockets(listener.port), 300);
      // Closed by the agent at the deadline (plus the refusal's linger): EOF for each client.
      for (const conn of idle) equal(await readAll(conn), "");
      await waitFor(() => listener.pendingHandshakes === 0, { message: "none pending" });
      let open = -1;
      await waitFor(async () => (open = await acceptedSockets(listener.port)) === 0, {
        message: "the listener's descriptors to be closed",
        seen: () => `${open} still open`,
      });
    } finally {
      for (const conn of idle) conn.close();
    }
  },
}));

/**
 * This process's open descriptors that are connections the 127.0.0.1 listener
 * on `port` accepted (counted by socket inode, so other tests' descriptors
 * opening or closing meanwhile do not move the count).
 */
async function acceptedSockets(port: number): Promise<number> {
  const local = `0100007F:${port.toString(16).toUpperCase().padStart(4, "0")}`;
  const inodes = new Set<string>();
  for (const line of (await Deno.readTextFile("/proc/net/tcp")).split("\n").slice(1)) {
    const fields = line.trim().split(/\s+/);
    // Not the listening socket itself (state 0A), nor a closed one (inode 0).
    if (fields[1] === local && fields[3] !== "0A" && fields[9] !== "0") inodes.add(fields[9]!);
  }
  let count = 0;
  for (const entry of Deno.readDirSync("/proc/self/fd")) {
    try {
      const target = Deno.readLinkSync(`/proc/self/fd/${entry.name}`);
      if (inodes.has(target.slice("socket:[".length, -1))) count++;
    } catch {
      // Closed between the listing and the read.
    }
  }
  return count;
}

Deno.test("attach over plain TCP reports no TLS fingerprint", async () => {
  await using listener = await listen();
  equal(listener.tls, false);
  equal(listener.tlsFingerprint, undefined);
});
