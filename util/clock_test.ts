import { deepEqual, equal } from "node:assert/strict";
import { FakeClock } from "./clock.ts";

Deno.test("FakeClock fires timers in order as time advances, and not before", async () => {
  const clock = new FakeClock(1000);
  const fired: string[] = [];
  clock.setTimeout(() => fired.push(`b@${clock.now()}`), 200);
  clock.setTimeout(() => fired.push(`a@${clock.now()}`), 100);
  const cancelled = clock.setTimeout(() => fired.push("never"), 150);
  clock.clearTimeout(cancelled);
  await clock.advance(99);
  deepEqual(fired, []);
  await clock.advance(101);
  deepEqual(fired, ["a@1100", "b@1200"]);
  equal(clock.now(), 1200);
  equal(clock.pending, 0);
});

Deno.test("FakeClock repeats intervals and lets the work they start settle", async () => {
  const clock = new FakeClock(0);
  const seen: number[] = [];
  const id = clock.setInterval(() => {
    Promise.resolve().then(() => seen.push(clock.now()));
  }, 10);
  await clock.advance(35);
  deepEqual(seen, [10, 20, 30]);
  clock.clearInterval(id);
  await clock.advance(100);
  deepEqual(seen, [10, 20, 30]);
});
