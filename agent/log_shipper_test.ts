import { deepEqual, ok } from "node:assert/strict";
import type { AgentMessage, LogRecord } from "../protocol/mod.ts";
import { FakeClock } from "../util/clock.ts";
import { createLogger } from "../util/log.ts";
import { waitFor } from "../tests/_wait.ts";
import { FLUSH_MS, LogShipper, MAX_LINE_BYTES, SpoolBudget } from "./log_shipper.ts";
import { recoverSpools, RunSpool } from "./spool.ts";

function streamOf(...chunks: string[]): ReadableStream<Uint8Array> {
  const encoder = new TextEncoder();
  return ReadableStream.from(chunks.map((c) => encoder.encode(c)));
}

Deno.test("lines split across chunks are shipped whole, numbered, with a partial last line", async () => {
  const sent: LogRecord[] = [];
  const shipper = new LogShipper("r1", (msg: AgentMessage) => {
    if (msg.type === "logs") sent.push(...msg.records);
    return true;
  });
  await shipper.collect(streamOf("one\ntw", "o\r\nthr", "ee"), "stdout");
  const done = shipper.finish();
  shipper.ack(0);
  await done;
  deepEqual(sent.map((r) => [r.seq, r.line]), [[0, "one"], [1, "two"], [2, "three"]]);
});

Deno.test("unacknowledged batches are sent again after a reconnect, acknowledged ones are not", async () => {
  const sent: number[][] = [];
  let up = false;
  const shipper = new LogShipper("r1", (msg) => {
    if (msg.type === "logs") sent.push(msg.records.map((r) => r.seq));
    return up;
  });
  await shipper.collect(streamOf("a\nb\n"), "stdout");
  const done = shipper.finish();
  up = true;
  shipper.resend();
  deepEqual(sent, [[0, 1], [0, 1]]);
  shipper.ack(0);
  await done;
  shipper.resend();
  deepEqual(sent.length, 2, "nothing left to resend");
});

Deno.test("an endless line is cut into pieces of the maximum size", async () => {
  const sent: LogRecord[] = [];
  const shipper = new LogShipper("r1", (msg) => {
    if (msg.type === "logs") sent.push(...msg.records);
    return true;
  });
  await shipper.collect(streamOf("x".repeat(MAX_LINE_BYTES * 2 + 5)), "stderr");
  const done = shipper.finish();
  shipper.ack(0);
  await done;
  deepEqual(sent.map((r) => r.line.length), [MAX_LINE_BYTES, MAX_LINE_BYTES, 5]);
  deepEqual(sent.every((r) => r.stream === "stderr"), true);
});

Deno.test("lines beyond the log quota are read and counted, not stored, and one last line names them", async () => {
  const sent: LogRecord[] = [];
  const shipper = new LogShipper("r1", (msg) => {
    if (msg.type === "logs") {
      sent.push(...msg.records);
      queueMicrotask(() => shipper.ack(msg.batch));
    }
    return true;
  }, { quotaBytes: 10 });
  // "aaaa\n" and "bbbb\n" fill the quota; 1,000 lines of 5 bytes go past it.
  await shipper.collect(streamOf("aaaa\nbbbb\n", "cccc\n".repeat(1_000)), "stdout");
  await shipper.finish();
  deepEqual(sent.map((r) => r.line), [
    "aaaa",
    "bbbb",
    "oneoff: log quota of 10 bytes reached; further lines are counted, not stored",
    "oneoff: log quota of 10 bytes reached; 1000 lines (5000 bytes) not stored",
  ]);
  deepEqual(sent.slice(2).map((r) => r.stream), ["stderr", "stderr"]);
  deepEqual(shipper.overQuota, { lines: 1000, bytes: 5000 });
});

Deno.test("the log shipper sends a partial batch once its flush interval has passed", async () => {
  const clock = new FakeClock();
  const batches: number[][] = [];
  const shipper = new LogShipper("run-1", (msg) => {
    if (msg.type === "logs") batches.push(msg.records.map((r) => r.ts));
    return true;
  }, { clock });
  const encoder = new TextEncoder();
  await shipper.collect(ReadableStream.from([encoder.encode("a\nb\n")]), "stdout");
  const at = clock.now();
  await clock.advance(FLUSH_MS - 1);
  deepEqual(batches, []);
  await clock.advance(1);
  deepEqual(batches, [[at, at]]);
});

Deno.test("an acknowledged later batch does not clear an earlier one the server did not store", async () => {
  const sent: { batch: number; seqs: number[] }[] = [];
  const shipper = new LogShipper("r1", (msg) => {
    if (msg.type === "logs") sent.push({ batch: msg.batch, seqs: msg.records.map((r) => r.seq) });
    return true;
  });
  await shipper.collect(streamOf("a\n"), "stdout");
  shipper.finish();
  await shipper.collect(streamOf("b\n"), "stdout");
  const done = shipper.finish();
  deepEqual(sent, [{ batch: 0, seqs: [0] }, { batch: 1, seqs: [1] }]);
  shipper.ack(1);
  shipper.resend();
  deepEqual(sent.at(-1), { batch: 0, seqs: [0] }, "batch 0 is still owed");
  shipper.ack(0);
  await done;
});

async function withDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "oneoff-shipper-test-" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("a batch is on disk before it is sent, and its file goes with its own ack only", async () => {
  await withDir(async (dir) => {
    const onDisk: string[][] = [];
    const spool = new RunSpool(dir, "r1");
    const shipper = new LogShipper("r1", (msg) => {
      if (msg.type === "logs") {
        onDisk.push([...Deno.readDirSync(`${dir}/r1`)].map((e) => e.name).sort());
      }
      return true;
    }, { spool });
    await shipper.collect(streamOf("a\n"), "stdout");
    shipper.finish();
    await shipper.collect(streamOf("b\n"), "stdout");
    const done = shipper.finish();
    deepEqual(onDisk, [["0.json"], ["0.json", "1.json"]]);
    shipper.ack(1);
    deepEqual(spool.seqs, [0], "a later ack leaves the earlier batch on disk");
    shipper.ack(0);
    await done;
    deepEqual([...Deno.readDirSync(dir)], [], "the run's folder goes with its last batch");
  });
});

Deno.test("an unacknowledged batch is sent again after the resend interval, then with backoff; a nacked one too", async () => {
  const clock = new FakeClock();
  const sends: number[] = [];
  const shipper = new LogShipper("r1", (msg) => {
    if (msg.type === "logs") sends.push(clock.now());
    return true;
  }, { clock, resendMs: 1000, maxBackoffMs: 3000 });
  const t0 = clock.now();
  await shipper.collect(streamOf("a\n"), "stdout");
  const done = shipper.finish();
  await clock.advance(8000);
  // Sent at 0, again at 1 s, then 2 s later, then at most 3 s apart.
  deepEqual(sends.map((t) => t - t0), [0, 1000, 3000, 6000]);
  shipper.nack(0);
  const nackedAt = clock.now();
  await clock.advance(2999);
  deepEqual(sends.at(-1), 6000 + t0, "a nack waits for the backoff too");
  await clock.advance(1);
  deepEqual(sends.at(-1), nackedAt + 3000);
  shipper.ack(0);
  await done;
  const count = sends.length;
  await clock.advance(60_000);
  deepEqual(sends.length, count, "nothing is resent once acknowledged");
  deepEqual(clock.pending, 0, "no timer is left");
});

Deno.test("batches that could not be sent (channel down) go out on the timer once it is up", async () => {
  const clock = new FakeClock();
  let up = false;
  const sent: number[] = [];
  const shipper = new LogShipper("r1", (msg) => {
    if (msg.type === "logs" && up) sent.push(msg.batch);
    return up;
  }, { clock, resendMs: 1000 });
  await shipper.collect(streamOf("a\n"), "stdout");
  shipper.finish();
  await shipper.collect(streamOf("b\n"), "stdout");
  shipper.finish();
  up = true;
  await clock.advance(1000);
  deepEqual(sent, [0, 1]);
});

Deno.test("a full spool stops reading the output until acks free room, and says so once each way", async () => {
  await withDir(async (dir) => {
    const logs: string[] = [];
    // One byte: every batch fills it.
    const budget = new SpoolBudget(
      1,
      createLogger("test", { sink: (line) => logs.push(JSON.parse(line).msg) }),
    );
    const batches: number[] = [];
    const shipper = new LogShipper("r1", (msg) => {
      if (msg.type === "logs") batches.push(msg.batch);
      return true;
    }, { spool: new RunSpool(dir, "r1"), budget });
    let pulled = 0;
    const chunks = 4;
    const stream = new ReadableStream<Uint8Array>({
      async pull(controller) {
        if (pulled === chunks) return controller.close();
        pulled++;
        // Longer than the flush interval: each line is its own batch.
        await new Promise((resolve) => setTimeout(resolve, FLUSH_MS * 2));
        controller.enqueue(new TextEncoder().encode(`line-${pulled}\n`));
      },
    }, { highWaterMark: 0 });
    let finished = false;
    const reading = shipper.collect(stream, "stdout").then(() => finished = true);
    await waitFor(() => budget.paused && batches.length === 2, { message: "the spool to fill" });
    const stalled = pulled;
    await new Promise((resolve) => setTimeout(resolve, FLUSH_MS * 5));
    deepEqual(pulled, stalled, "nothing more is read while the spool is full");
    deepEqual(logs.filter((m) => m.includes("pausing")).length, 1);
    let acked = 0;
    while (!finished) {
      while (acked < batches.length) shipper.ack(acked++);
      await new Promise((resolve) => setTimeout(resolve, FLUSH_MS));
    }
    await reading;
    const done = shipper.finish();
    while (acked < batches.length) shipper.ack(acked++);
    await done;
    deepEqual(shipper.lines, chunks, "every line was read, none dropped");
    const pauses = logs.filter((m) => m.includes("pausing")).length;
    deepEqual(logs.filter((m) => m.includes("resumes")).length, pauses, logs.join("\n"));
  });
});

Deno.test("batches an earlier agent process spooled are sent again under their own numbers", async () => {
  await withDir(async (dir) => {
    const before = new LogShipper("r1", () => false, { spool: new RunSpool(dir, "r1") });
    await before.collect(streamOf("a\n"), "stdout");
    before.finish();
    await before.collect(streamOf("b\n"), "stdout");
    before.finish();
    before.close();
    const [spool] = await recoverSpools(dir);
    const sent: { batch: number; lines: string[] }[] = [];
    const after = LogShipper.recover(spool!, (msg) => {
      if (msg.type === "logs") {
        sent.push({
          batch: msg.batch,
          lines: msg.records.map((r) => r.line),
        });
      }
      return true;
    });
    deepEqual(sent, [{ batch: 0, lines: ["a"] }, { batch: 1, lines: ["b"] }]);
    after.ack(0);
    after.ack(1);
    ok(after.done);
    deepEqual([...Deno.readDirSync(dir)], []);
  });
});

Deno.test("a small batch never overtakes a bigger one waiting for room in the send window", async () => {
  const sent: number[] = [];
  const shipper = new LogShipper("r1", (msg) => {
    if (msg.type === "logs") sent.push(msg.batch);
    return true;
  });
  // Batches of about 1 MiB (cut by bytes): three fit the 4 MiB window, the fourth waits.
  const line = "x".repeat(999) + "\n";
  await shipper.collect(streamOf(line.repeat(4500), "tail\n"), "stdout");
  const done = shipper.finish();
  deepEqual(sent, [0, 1, 2], "the small last batch waits behind the fourth");
  for (let batch = 0; batch < 5; batch++) shipper.ack(batch);
  await done;
  deepEqual(sent, [0, 1, 2, 3, 4], "then every batch in order");
});
