import { deepEqual } from "node:assert/strict";
import { bytes, duration } from "./format.ts";

Deno.test("durations use the two largest units that matter", () => {
  deepEqual(
    [850, 1234, 12_000, 61_000, 120_000, 3_660_000, 7_200_000, 50 * 3600_000].map(duration),
    ["850 ms", "1.2 s", "12 s", "1 min 1 s", "2 min", "1 h 1 min", "2 h", "2 d 2 h"],
  );
});

Deno.test("byte counts use binary units", () => {
  deepEqual([512, 1536, 20 * 1024 * 1024, 1024 ** 3].map(bytes), [
    "512 B",
    "1.5 KiB",
    "20 MiB",
    "1 GiB",
  ]);
});
