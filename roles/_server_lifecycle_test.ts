import { deepEqual, throws } from "node:assert/strict";
import { UsageError } from "../cli/_io.ts";
import { lifecycleFlags } from "./_server_lifecycle.ts";

Deno.test("lifecycle flags take durations and counts", () => {
  deepEqual(
    lifecycleFlags({
      "log-retention": "7d",
      "log-max-lines-per-app": "5000",
      "run-retention": "30d",
      "audit-retention": "400d",
      "keep-releases": "3",
      "blob-grace": "2h",
    }),
    {
      logRetentionMs: 7 * 86_400_000,
      runRetentionMs: 30 * 86_400_000,
      auditRetentionMs: 400 * 86_400_000,
      blobGraceMs: 7_200_000,
      logMaxLinesPerApp: 5000,
      keepReleases: 3,
    },
  );
  deepEqual(lifecycleFlags({}), {});
});

Deno.test("an audit retention shorter than the run retention is a usage error", () => {
  throws(
    () => lifecycleFlags({ "run-retention": "100d", "audit-retention": "99d" }),
    new UsageError(
      "Audit retention (99d) is shorter than run retention (100d): give --audit-retention at least --run-retention",
    ),
  );
  throws(() => lifecycleFlags({ "keep-releases": "0" }), /Invalid --keep-releases "0"/);
  throws(() => lifecycleFlags({ "log-retention": "soon" }), /Invalid duration "soon"/);
});
