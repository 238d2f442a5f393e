import { equal } from "node:assert/strict";
import { parseRunLabel, runLabel } from "./mod.ts";

Deno.test("runLabel and parseRunLabel round-trip", () => {
  for (const n of [1, 7, 42, 999_999_999]) equal(parseRunLabel(runLabel(n)), n);
});

Deno.test("parseRunLabel refuses what is not a label", () => {
  for (const text of ["", "one-off-", "one-off-0", "one-off-x", "one-off-1 ", "ONE-OFF-1", "x1"]) {
    equal(parseRunLabel(text), null, text);
  }
  equal(parseRunLabel("one-off-1234567890"), null, "ten digits");
});
