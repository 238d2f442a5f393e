import { deepEqual } from "node:assert/strict";
import { ago, cursor, runDuration, utc } from "./_format.ts";

Deno.test("moments read as how long ago, then as a date", () => {
  const now = Date.parse("2025-06-01T12:00:00Z");
  const at = (s: number) => ago(new Date(now - s * 1000), now);
  deepEqual(
    [at(1), at(30), at(600), at(7200), at(3 * 86400), at(90 * 86400)],
    ["just now", "30 s ago", "10 min ago", "2 h ago", "3 d ago", "2025-03-03"],
  );
  deepEqual(utc(new Date(now)), "2025-06-01 12:00:00 UTC");
});

Deno.test("a run's duration runs to now until it ends, and is null before it starts", () => {
  const started_at = new Date(1000);
  deepEqual(runDuration({ started_at, ended_at: new Date(4000) }), 3000);
  deepEqual(runDuration({ started_at, ended_at: null }, 2500), 1500);
  deepEqual(runDuration({ started_at: null, ended_at: null }), null);
});

Deno.test("cursors are positive integers; anything else means the first page", () => {
  deepEqual(["12", "0", "-3", "1e3", "abc", undefined, "9".repeat(20)].map(cursor), [
    12,
    undefined,
    undefined,
    undefined,
    undefined,
    undefined,
    undefined,
  ]);
});
