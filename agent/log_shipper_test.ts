import { deepEqual } from "node:assert/strict";
import type { AgentMessage, LogRecord } from "../protocol/mod.ts";
import { FakeClock } from "../util/clock.ts";
import { FLUSH_MS, LogShipper, MAX_LINE_BYTES } from "./log_shipper.ts";

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
