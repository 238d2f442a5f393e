import { equal } from "node:assert/strict";
import { createHash } from "node:crypto";
import { sha256Hex } from "./sha256.ts";

Deno.test("sha256Hex agrees with node:crypto at every padding boundary", () => {
  for (const length of [0, 1, 3, 55, 56, 57, 63, 64, 65, 119, 120, 128, 1000]) {
    const data = new Uint8Array(length).map((_, i) => (i * 31 + length) & 0xff);
    equal(sha256Hex(data), createHash("sha256").update(data).digest("hex"), `length ${length}`);
  }
});
