import { deepEqual, equal, throws } from "node:assert/strict";
import {
  countFrame,
  encodeFrame,
  FRAME,
  FRAME_MAX_PAYLOAD,
  FrameDecoder,
  FrameError,
  parseHandshake,
  readCount,
  readResize,
  resizeFrame,
} from "./attach_frames.ts";

const enc = new TextEncoder();

Deno.test("frames round-trip whole, and cut at every byte", () => {
  const stream = new Uint8Array([
    ...encodeFrame(FRAME.STDOUT, enc.encode("hello")),
    ...countFrame(FRAME.ACK, 2 ** 40 + 7),
    ...resizeFrame(120, 40),
    ...encodeFrame(FRAME.KEEPALIVE),
  ]);
  const whole = new FrameDecoder().push(stream);
  equal(whole.length, 4);
  deepEqual(whole[0], { type: FRAME.STDOUT, payload: enc.encode("hello") });
  equal(readCount(whole[1]!.payload), 2 ** 40 + 7);
  deepEqual(readResize(whole[2]!.payload), { cols: 120, rows: 40 });
  deepEqual(whole[3], { type: FRAME.KEEPALIVE, payload: new Uint8Array(0) });
  const decoder = new FrameDecoder();
  const cut = [];
  for (const byte of stream) cut.push(...decoder.push(new Uint8Array([byte])));
  deepEqual(cut, whole);
});

Deno.test("a frame over 64 KiB, an unknown type and a truncated frame are caught", () => {
  throws(() => encodeFrame(FRAME.STDOUT, new Uint8Array(FRAME_MAX_PAYLOAD + 1)));
  const oversize = new Uint8Array([FRAME.STDIN, 0, 1, 0, 1]);
  throws(() => new FrameDecoder().push(oversize), FrameError);
  const huge = new Uint8Array([FRAME.STDIN, 0xff, 0xff, 0xff, 0xff]);
  throws(() => new FrameDecoder().push(huge), FrameError);
  throws(() => new FrameDecoder().push(new Uint8Array([0x6f, 0, 0, 0, 0])), /Unknown frame type/);
  const truncated = new FrameDecoder();
  deepEqual(truncated.push(encodeFrame(FRAME.STDIN, enc.encode("abc")).subarray(0, 7)), []);
  equal(truncated.pending, 7);
  equal(readCount(new Uint8Array(3)), null);
  equal(readResize(new Uint8Array(5)), null);
});

Deno.test("the handshake line chooses raw, framed or resume", () => {
  deepEqual(parseHandshake(enc.encode("abc")), { mode: "raw", secret: enc.encode("abc") });
  deepEqual(parseHandshake(enc.encode("oneoff-framed/1 abc")), {
    mode: "framed",
    secret: enc.encode("abc"),
  });
  deepEqual(parseHandshake(enc.encode("oneoff-resume/1 abc 123")), {
    mode: "resume",
    secret: enc.encode("abc"),
    outOffset: 123,
  });
  deepEqual(parseHandshake(enc.encode("oneoff-resume/1 abc -")), {
    mode: "resume",
    secret: enc.encode("abc"),
    outOffset: null,
  });
  // A malformed resume line is a raw secret nobody expects.
  equal(parseHandshake(enc.encode("oneoff-resume/1 abc x")).mode, "raw");
});
