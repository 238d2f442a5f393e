import { deepEqual, equal, ok } from "node:assert/strict";
import type { AgentMessage } from "../protocol/mod.ts";
import { Recorder } from "./recorder.ts";
import { waitFor } from "../tests/_wait.ts";
import { FakeClock } from "../util/clock.ts";

type Audit = Extract<AgentMessage, { type: "audit" }>;
interface Chunk {
  v: number;
  t0: number;
  events: [number, string, string][];
  final?: true;
  size?: { cols: number; rows: number };
}

/** A fake control channel: records what is sent, can be down, can ack at once. */
function channel(options: { up?: boolean; onSend?: (msg: Audit) => void } = {}) {
  const sent: Audit[] = [];
  const state: { up: boolean; acking?: Recorder } = { up: options.up ?? true };
  return {
    sent,
    state,
    send(msg: AgentMessage): boolean {
      if (!state.up || msg.type !== "audit") return false;
      sent.push(msg);
      options.onSend?.(msg);
      // Like the server: the acknowledgement comes back later.
      const acking = state.acking;
      if (acking) queueMicrotask(() => acking.ack(msg.seq));
      return true;
    },
    /** Resolves once `count` messages in all have been sent. */
    async sentAtLeast(count: number): Promise<void> {
      await waitFor(() => sent.length >= count, {
        message: `${count} audit messages to be sent`,
        seen: () => ({ sent: sent.length }),
      });
    },
  };
}

async function tempDir(): Promise<string> {
  return await Deno.makeTempDir({ prefix: "oneoff-recorder-test-" });
}

async function exists(path: string): Promise<boolean> {
  return await Deno.stat(path).then(() => true, () => false);
}

function chunkOf(msg: Audit): Chunk {
  return JSON.parse(msg.data);
}

function bytesOf(msgs: Audit[], kind: "i" | "o"): Uint8Array {
  const parts = msgs.flatMap((m) =>
    chunkOf(m).events.filter((e) => e[1] === kind).map((e) => Uint8Array.fromBase64(e[2]))
  );
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let offset = 0;
  for (const part of parts) {
    out.set(part, offset);
    offset += part.length;
  }
  return out;
}

const text = (s: string) => new TextEncoder().encode(s);

Deno.test("recorder spools each chunk before sending it and deletes it once acknowledged", async () => {
  const dir = await tempDir();
  try {
    const seen: boolean[] = [];
    const ch = channel({
      onSend(msg) {
        // The file is on disk, with exactly what is sent, when it is sent.
        const path = `${dir}/run-1/${msg.seq}.json`;
        seen.push(Deno.readTextFileSync(path) === msg.data);
      },
    });
    const recorder = ch.state.acking = new Recorder({
      runId: "run-1",
      dir,
      send: ch.send,
      maxChunkBytes: 8,
      flushMs: 60_000,
    });
    recorder.start({ cols: 80, rows: 24 });
    recorder.output(text("hello, world\r\n"));
    await ch.sentAtLeast(1);
    recorder.input(text("exit\r"));
    await recorder.finish();
    deepEqual(ch.sent.map((m) => m.seq), [0, 1]);
    deepEqual(seen, [true, true]);
    const [first, last] = ch.sent.map(chunkOf);
    deepEqual(first!.size, { cols: 80, rows: 24 });
    equal(first!.final, undefined);
    equal(last!.final, true);
    equal(last!.size, undefined);
    equal(new TextDecoder().decode(bytesOf(ch.sent, "o")), "hello, world\r\n");
    equal(new TextDecoder().decode(bytesOf(ch.sent, "i")), "exit\r");
    equal(await exists(`${dir}/run-1`), false);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("recorder stamps events with milliseconds since the start and records resizes", async () => {
  const dir = await tempDir();
  try {
    let clock = 1_000_000;
    const ch = channel();
    const recorder = ch.state.acking = new Recorder({
      runId: "run-2",
      dir,
      send: ch.send,
      now: () => clock,
      flushMs: 60_000,
    });
    recorder.start(null);
    clock += 10;
    recorder.output(text("a"));
    recorder.output(text("b"));
    clock += 490;
    recorder.resize(120, 40);
    clock -= 300; // the wall clock stepped back
    recorder.input(text("q"));
    await recorder.finish();
    equal(ch.sent.length, 1);
    const chunk = chunkOf(ch.sent[0]!);
    deepEqual(chunk, {
      v: 1,
      t0: 1_000_000,
      events: [[10, "o", text("ab").toBase64()], [500, "r", "120x40"], [
        500,
        "i",
        text("q").toBase64(),
      ]],
      final: true,
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("recorder cuts a small chunk when its timer fires", async () => {
  const dir = await tempDir();
  try {
    const ch = channel();
    const recorder = ch.state.acking = new Recorder({
      runId: "run-3",
      dir,
      send: ch.send,
      flushMs: 5,
    });
    recorder.start(null);
    recorder.output(text("x"));
    await ch.sentAtLeast(1);
    equal(chunkOf(ch.sent[0]!).final, undefined);
    await recorder.finish();
    equal(chunkOf(ch.sent[1]!).final, true);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("recorder copies the bytes it is given", async () => {
  const dir = await tempDir();
  try {
    const ch = channel();
    const recorder = ch.state.acking = new Recorder({
      runId: "run-4",
      dir,
      send: ch.send,
      flushMs: 60_000,
    });
    recorder.start(null);
    const buf = text("secret");
    recorder.output(buf);
    buf.fill(0);
    await recorder.finish();
    equal(new TextDecoder().decode(bytesOf(ch.sent, "o")), "secret");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("recorder keeps every byte of a burst far larger than a chunk", async () => {
  const dir = await tempDir();
  try {
    const ch = channel();
    const max = 16 * 1024;
    const recorder = ch.state.acking = new Recorder({
      runId: "run-5",
      dir,
      send: ch.send,
      maxChunkBytes: max,
      flushMs: 60_000,
    });
    recorder.start({ cols: 80, rows: 24 });
    const expected = new Uint8Array(2 * 1024 * 1024);
    for (let i = 0; i < expected.length; i++) expected[i] = (i * 7 + (i >> 11)) & 0xff;
    for (let off = 0; off < expected.length; off += 3000) {
      recorder.output(expected.subarray(off, off + 3000));
    }
    await recorder.finish();
    deepEqual(ch.sent.map((m) => m.seq), ch.sent.map((_, i) => i));
    deepEqual(bytesOf(ch.sent, "o"), expected);
    for (const msg of ch.sent) {
      const raw = chunkOf(msg).events.reduce((n, e) => n + Uint8Array.fromBase64(e[2]).length, 0);
      ok(raw <= 4 * max + 64 * 1024, `chunk ${msg.seq} holds ${raw} bytes`);
    }
    ok(ch.sent.length >= (2 * 1024 * 1024) / (4 * max + 64 * 1024));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("recorder resends unacknowledged chunks in order, before any newer chunk", async () => {
  const dir = await tempDir();
  try {
    const ch = channel();
    const recorder = new Recorder({
      runId: "run-6",
      dir,
      send: ch.send,
      maxChunkBytes: 1,
      flushMs: 60_000,
    });
    recorder.start(null);
    recorder.output(text("0"));
    await ch.sentAtLeast(1); // chunk 0 went out but was never acknowledged
    ch.state.up = false;
    // Two chunks are spooled while the channel is down.
    recorder.output(text("1"));
    await waitFor(() => exists(`${dir}/run-6/1.json`), { message: "chunk 1 on disk" });
    recorder.output(text("2"));
    await waitFor(() => exists(`${dir}/run-6/2.json`), { message: "chunk 2 on disk" });
    ch.state.up = true;
    recorder.resend();
    recorder.output(text("3"));
    await ch.sentAtLeast(5);
    deepEqual(ch.sent.map((m) => m.seq), [0, 0, 1, 2, 3]);
    recorder.ack(3);
    const done = recorder.finish();
    await ch.sentAtLeast(6);
    recorder.ack(4);
    await done;
    equal(await exists(`${dir}/run-6`), false);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("recorder keeps a chunk in memory when the spool cannot be written", async () => {
  const dir = await tempDir();
  try {
    await Deno.writeTextFile(`${dir}/not-a-dir`, "");
    const errors: unknown[] = [];
    const ch = channel({ up: false });
    const recorder = new Recorder({
      runId: "run-7",
      dir: `${dir}/not-a-dir`,
      send: ch.send,
      flushMs: 60_000,
      onError: (e) => errors.push(e),
    });
    recorder.start(null);
    recorder.output(text("kept"));
    const done = recorder.finish(60_000);
    await waitFor(() => errors.length > 0, { message: "an error to be reported" });
    ch.state.up = true;
    recorder.resend();
    await ch.sentAtLeast(1);
    equal(new TextDecoder().decode(bytesOf(ch.sent, "o")), "kept");
    recorder.ack(0);
    await done;
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("recover sends chunks left on disk once each, in order, and deletes them on ack", async () => {
  const dir = await tempDir();
  try {
    const first = channel();
    const recorder = new Recorder({
      runId: "run-8",
      dir,
      send: first.send,
      maxChunkBytes: 1,
      flushMs: 60_000,
    });
    recorder.start(null);
    for (const [i, s] of ["a", "b", "c"].entries()) {
      recorder.output(text(s));
      await first.sentAtLeast(i + 1);
    }
    await recorder.finish(10); // never acknowledged: the chunks stay
    deepEqual(first.sent.map((m) => m.seq), [0, 1, 2, 3]);
    // An agent crash between writing and renaming leaves temp files behind.
    await Deno.mkdir(`${dir}/run-9`);
    await Deno.writeTextFile(`${dir}/run-9/0.json.tmp`, '{"v":1,"t0":5,"events":[]}');
    await Deno.writeTextFile(`${dir}/run-9/1.json.tmp`, '{"v":1,"t0":5,"ev');
    await Deno.mkdir(`${dir}/run-10`);

    const later = channel();
    const recovered = await Recorder.recover(dir, later.send);
    const seqs = (runId: string) => later.sent.filter((m) => m.runId === runId).map((m) => m.seq);
    deepEqual(seqs("run-8"), [0, 1, 2, 3]);
    deepEqual(seqs("run-9"), [0]);
    deepEqual(
      later.sent.filter((m) => m.runId === "run-8").map((m) => m.data),
      first.sent.map((m) => m.data),
    );
    equal(await exists(`${dir}/run-10`), false);

    recovered.ack("run-8", 1);
    recovered.ack("run-9", 0);
    recovered.resend();
    await later.sentAtLeast(later.sent.length + 2);
    deepEqual(seqs("run-8"), [0, 1, 2, 3, 2, 3]);
    recovered.ack("run-8", 3);
    recovered.resend();
    // The deletions are queued before this pass: once it is done, they are too.
    const before = later.sent.length;
    await waitFor(async () => !(await exists(`${dir}/run-8`)), {
      message: "run-8's spool to be removed",
    });
    equal(later.sent.length, before);
    deepEqual([...Deno.readDirSync(dir)], []);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("recover does not send while the channel is down, and resend delivers later", async () => {
  const dir = await tempDir();
  try {
    await Deno.mkdir(`${dir}/run-11`);
    await Deno.writeTextFile(`${dir}/run-11/0.json`, '{"v":1,"t0":5,"events":[]}');
    await Deno.writeTextFile(`${dir}/run-11/1.json`, '{"v":1,"t0":5,"events":[],"final":true}');
    const ch = channel({ up: false });
    const recovered = await Recorder.recover(dir, ch.send);
    equal(ch.sent.length, 0);
    ch.state.up = true;
    recovered.resend();
    await ch.sentAtLeast(2);
    deepEqual(ch.sent.map((m) => m.seq), [0, 1]);
    recovered.ack("run-11", 1);
    await waitFor(async () => !(await exists(`${dir}/run-11`)), {
      message: "run-11's spool to be removed",
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("recover sends a large spool within the in-flight bound, the rest as acks come", async () => {
  const dir = await tempDir();
  try {
    await Deno.mkdir(`${dir}/run-12`);
    const big = "x".repeat(1024 * 1024);
    const count = 10;
    for (let seq = 0; seq < count; seq++) {
      const chunk = {
        v: 1,
        t0: 5,
        events: [[seq, "o", big]],
        ...(seq === count - 1 ? { final: true } : {}),
      };
      await Deno.writeTextFile(`${dir}/run-12/${seq}.json`, JSON.stringify(chunk));
    }
    const ch = channel();
    const recovered = await Recorder.recover(dir, ch.send);
    const inFlight = () => ch.sent.reduce((n, m) => n + m.data.length, 0);
    ok(ch.sent.length > 0 && ch.sent.length < count, `${ch.sent.length} sent at once`);
    ok(inFlight() <= 4 * 1024 * 1024, `${inFlight()} bytes in flight`);
    // The server acknowledges each chunk as it comes: the rest follows, in order, once each.
    let acked = 0;
    while (acked < count) {
      await ch.sentAtLeast(acked + 1);
      const unacked = ch.sent.slice(acked).reduce((n, m) => n + m.data.length, 0);
      ok(unacked <= 4 * 1024 * 1024, `${unacked} bytes in flight after ${acked} acks`);
      recovered.ack("run-12", acked++);
    }
    deepEqual(ch.sent.map((m) => m.seq), [...Array(count).keys()]);
    await waitFor(async () => !(await exists(`${dir}/run-12`)), {
      message: "run-12's spool to be removed",
    });
    equal(ch.sent.length, count);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("recover of a missing spool folder finds nothing", async () => {
  const ch = channel();
  const recovered = await Recorder.recover(`/nonexistent/oneoff-${crypto.randomUUID()}`, ch.send);
  recovered.resend();
  equal(ch.sent.length, 0);
});

Deno.test("recorder past its quota records what fits, one marker, then nothing more of the session", async () => {
  const dir = await tempDir();
  try {
    const ch = channel();
    const recorder = new Recorder({ runId: "r-quota", dir, send: ch.send, quotaBytes: 10 });
    ch.state.acking = recorder;
    recorder.start({ cols: 80, rows: 24 });
    recorder.output(text("hello"));
    recorder.input(text("ab"));
    equal(recorder.unrecorded, null);
    recorder.output(text("world!")); // 3 fit
    recorder.output(text("x".repeat(1000)));
    recorder.input(text("exit\r"));
    recorder.resize(100, 30);
    await recorder.finish(2000);
    const out = new TextDecoder().decode(bytesOf(ch.sent, "o"));
    equal(
      out,
      "hellowor\r\n[oneoff: recording stopped at 10 bytes; the session goes on unrecorded]\r\n",
    );
    equal(new TextDecoder().decode(bytesOf(ch.sent, "i")), "ab");
    ok(!ch.sent.some((m) => chunkOf(m).events.some((e) => e[1] === "r")));
    deepEqual(recorder.unrecorded, { quotaBytes: 10, bytes: 3 + 1000 + 5 });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a watched recorder cuts its chunks sooner, down to its fast-seq limit, and as usual once unwatched", async () => {
  const dir = await tempDir();
  try {
    const clock = new FakeClock();
    const ch = channel();
    const recorder = new Recorder({
      runId: "run-watched",
      dir,
      send: (msg) => ch.send(msg),
      clock,
      flushMs: 250,
      watchedFlushMs: 25,
      fastSeqLimit: 2,
    });
    ch.state.acking = recorder;
    recorder.start(null);
    recorder.output(text("unwatched"));
    await clock.advance(100);
    equal(ch.sent.length, 0, "not cut before the usual delay");
    // Watched: what already waits goes at the faster pace too.
    recorder.watched(true);
    await clock.advance(25);
    equal(ch.sent.length, 1);
    recorder.output(text("watched"));
    await clock.advance(25);
    equal(ch.sent.length, 2);
    // Chunk 2 is at the limit: the usual delay again, though still watched.
    recorder.output(text("past the limit"));
    await clock.advance(100);
    equal(ch.sent.length, 2);
    await clock.advance(150);
    equal(ch.sent.length, 3);
    recorder.watched(false);
    recorder.output(text("unwatched again"));
    await clock.advance(100);
    equal(ch.sent.length, 3);
    await clock.advance(150);
    equal(ch.sent.length, 4);
    deepEqual(
      new TextDecoder().decode(bytesOf(ch.sent, "o")),
      "unwatchedwatchedpast the limitunwatched again",
    );
    await recorder.finish(0);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
