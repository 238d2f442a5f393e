import { deepEqual, equal, ok } from "node:assert/strict";
import {
  countFrame,
  encodeFrame,
  FRAME,
  type Frame,
  FRAMED_WINDOW,
  FrameDecoder,
  readHello,
} from "../protocol/mod.ts";
import { FakeClock } from "../util/clock.ts";
import type { AttachedClient } from "./attach_listener.ts";
import { FramedSession } from "./_framed_session.ts";
import { FakeProcess } from "./_testing.ts";
import type { SandboxSpec } from "./sandbox/mod.ts";

/** A client connection the test speaks through: `send` frames in, `frames` what came out. */
function peer() {
  const decoder = new FrameDecoder();
  const frames: Frame[] = [];
  const queue: Uint8Array[] = [];
  let closed = false;
  let waiting: ((n: number | null) => void) | undefined;
  let target: Uint8Array | undefined;
  /** Writes hang (a client that stopped reading) until the connection is closed. */
  const stall = { on: false, fail: [] as (() => void)[] };
  const conn = {
    read(buf: Uint8Array): Promise<number | null> {
      const head = queue.shift();
      if (head) {
        buf.set(head);
        return Promise.resolve(head.length);
      }
      if (closed) return Promise.resolve(null);
      target = buf;
      return new Promise((resolve) => waiting = resolve);
    },
    write(bytes: Uint8Array): Promise<number> {
      if (closed) return Promise.reject(new Error("closed"));
      if (stall.on) {
        return new Promise((_, reject) => stall.fail.push(() => reject(new Error("closed"))));
      }
      frames.push(...decoder.push(bytes));
      return Promise.resolve(bytes.length);
    },
    closeWrite: () => Promise.resolve(),
    close() {
      closed = true;
      waiting?.(null);
      for (const fail of stall.fail.splice(0)) fail();
    },
  };
  return {
    client: {
      conn,
      initial: new Uint8Array(),
      remoteAddr: "10.0.0.9:5555",
    } as unknown as AttachedClient,
    frames,
    stall,
    closed: () => closed,
    send(frame: Uint8Array) {
      if (waiting && target) {
        target.set(frame);
        const wake = waiting;
        waiting = undefined;
        wake(frame.length);
      } else queue.push(frame);
    },
    /** The network drops the connection: no CLOSE. */
    drop: () => conn.close(),
    output: () =>
      frames.filter((f) => f.type === FRAME.STDOUT).reduce((n, f) => n + f.payload.length, 0),
  };
}

function setup(overrides: { idleTimeoutMs?: number; graceMs?: number } = {}) {
  const clock = new FakeClock();
  const process = new FakeProcess({ tty: false } as unknown as SandboxSpec);
  const events: string[] = [];
  let n = 0;
  const session = new FramedSession(process, {
    tty: false,
    idleTimeoutMs: overrides.idleTimeoutMs ?? 30 * 60_000,
    graceMs: overrides.graceMs ?? 120_000,
    clock,
    onIdle: () => events.push("idle"),
    onHangup: () => events.push("hangup"),
    onGraceOver: () => events.push("grace over"),
    onResize: () => {},
    onReattach: (address) => events.push(`reattach ${address}`),
    issueSecret: () => `secret-${++n}`,
  });
  const running = session.run();
  return { clock, process, events, session, running };
}

const settle = () => new Promise((resolve) => setTimeout(resolve, 0));

Deno.test("keep-alives go out after 20 s of silence and never count as activity for the idle timeout", async () => {
  const { clock, events, session, process } = setup({ idleTimeoutMs: 60_000 });
  const a = peer();
  session.attach(a.client, 0);
  for (let t = 0; t < 50_000; t += 10_000) {
    a.send(encodeFrame(FRAME.KEEPALIVE));
    await clock.advance(10_000);
  }
  ok(a.frames.some((f) => f.type === FRAME.KEEPALIVE), "the agent sent keep-alives");
  deepEqual(events, []);
  a.send(encodeFrame(FRAME.KEEPALIVE));
  await clock.advance(15_000);
  deepEqual(events, ["idle"]);
  process.exit(0);
  session.close();
});

Deno.test("connected, no more than the 1 MiB window of output is in flight un-ACKed", async () => {
  const { session, process } = setup();
  const a = peer();
  session.attach(a.client, 0);
  const chunk = "x".repeat(64 * 1024);
  for (let i = 0; i < 48; i++) process.write(chunk);
  for (let i = 0; i < 20; i++) await settle();
  const first = a.output();
  ok(first <= FRAMED_WINDOW + 64 * 1024 && first >= FRAMED_WINDOW, `${first} bytes in flight`);
  a.send(countFrame(FRAME.ACK, first));
  for (let i = 0; i < 20; i++) await settle();
  ok(a.output() > first, "an ACK lets more through");
  process.exit(0);
  session.close();
});

Deno.test("output while disconnected goes to a 1 MiB ring; the resume replays it and says what was dropped", async () => {
  const { clock, events, session, process } = setup();
  const a = peer();
  session.attach(a.client, 0);
  a.drop();
  await settle();
  const chunk = "y".repeat(64 * 1024);
  for (let i = 0; i < 24; i++) process.write(chunk); // 1.5 MiB
  for (let i = 0; i < 40; i++) await settle();
  await clock.advance(60_000);
  deepEqual(events, [], "within the grace nothing happens to the process");
  const b = peer();
  session.attach(b.client, 0);
  for (let i = 0; i < 40; i++) await settle();
  const hello = readHello(b.frames[0]!.payload)!;
  const dropped = 24 * 64 * 1024 - FRAMED_WINDOW;
  deepEqual([hello.resume, hello.outOffset, hello.inOffset], ["secret-2", dropped, 0]);
  equal(
    new TextDecoder().decode(b.frames[1]!.payload),
    `oneoff: ${dropped} bytes of output dropped while disconnected`,
  );
  equal(b.output(), FRAMED_WINDOW);
  deepEqual(events, ["reattach 10.0.0.9:5555"]);
  process.exit(0);
  session.close();
});

Deno.test("a client that stays away past the grace: the run is told, once", async () => {
  const { clock, events, session, process } = setup({ graceMs: 5_000 });
  const a = peer();
  session.attach(a.client, 0);
  a.send(encodeFrame(FRAME.STDIN, new TextEncoder().encode("hi\n")));
  await settle();
  a.drop();
  await settle();
  await clock.advance(4_000);
  deepEqual(events, []);
  await clock.advance(2_000);
  deepEqual(events, ["grace over"]);
  deepEqual(process.input, ["hi\n"]);
  process.exit(129);
  session.close();
});

Deno.test("a stream that breaks the frame rules is told why after its HELLO, closed, and the process waits out the grace", async () => {
  const oversize = new Uint8Array([FRAME.STDIN, 0xff, 0xff, 0xff, 0xff]);
  const cases: [string, Uint8Array][] = [
    ["Unknown frame type 99", encodeFrame(99 as typeof FRAME.STDIN, new Uint8Array(2))],
    ["Frame of 4294967295 bytes is over the 64 KiB limit", oversize],
    ["Frame type 16 is not the client's to send", encodeFrame(FRAME.HELLO)],
  ];
  for (const [why, bytes] of cases) {
    const { clock, events, session, process } = setup({ graceMs: 5_000 });
    const a = peer();
    session.attach(a.client, 0);
    a.send(bytes);
    for (let i = 0; i < 10; i++) await settle();
    deepEqual(a.frames.map((f) => f.type), [FRAME.HELLO, FRAME.NOTICE], why);
    equal(
      new TextDecoder().decode(a.frames[1]!.payload),
      `oneoff: protocol error: ${why}; the connection is closed`,
    );
    ok(a.closed(), "the connection is closed");
    deepEqual(events, [], "a protocol error is a drop: the process keeps running");
    await clock.advance(6_000);
    deepEqual(events, ["grace over"]);
    process.exit(129);
    session.close();
  }
});

Deno.test("a connection let go that stopped reading is closed within the linger, not held open", async () => {
  const { clock, session, process } = setup();
  const a = peer();
  session.attach(a.client, 0);
  await settle();
  a.stall.on = true;
  // Another terminal takes over: the first is told (a write that never completes), then let go.
  session.attach(peer().client, null);
  await clock.advance(4_000);
  ok(!a.closed(), "it has the linger to read its NOTICE");
  await clock.advance(2_000);
  ok(a.closed(), "closed at the end of the linger");
  process.exit(0);
  session.close();
});

Deno.test("a notice said while the client is away reaches it when it comes back, once", async () => {
  const { session, process } = setup();
  const a = peer();
  session.attach(a.client, 0);
  a.drop();
  await settle();
  session.notice("admin is watching this session");
  const b = peer();
  session.attach(b.client, 0);
  for (let i = 0; i < 10; i++) await settle();
  const notices = b.frames.filter((f) => f.type === FRAME.NOTICE).map((f) =>
    new TextDecoder().decode(f.payload)
  );
  deepEqual(notices, ["oneoff: admin is watching this session"]);
  const c = peer();
  session.attach(c.client, 0);
  for (let i = 0; i < 10; i++) await settle();
  const watching = (f: Frame) =>
    f.type === FRAME.NOTICE && new TextDecoder().decode(f.payload).includes("watching");
  ok(!c.frames.some(watching), "said once");
  process.exit(0);
  session.close();
});
