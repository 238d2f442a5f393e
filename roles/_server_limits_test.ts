import { deepEqual, throws } from "node:assert/strict";
import { UsageError } from "../cli/_io.ts";
import { limitFlags } from "./_server_limits.ts";

Deno.test("server limit flags: sizes in bytes, --max-timeout a duration within a timer's range", () => {
  deepEqual(limitFlags({}), {});
  deepEqual(limitFlags({ "max-slug-unpacked-bytes": "1048576", "max-timeout": "2h" }), {
    maxSlugUnpackedBytes: 1048576,
    maxTimeoutMs: 2 * 3600_000,
  });
  deepEqual(limitFlags({ "max-timeout": "24d" }).maxTimeoutMs, 24 * 86_400_000);
  for (const bad of ["25d", "0s", "500ms", "forever"]) {
    throws(() => limitFlags({ "max-timeout": bad }), UsageError, bad);
  }
  for (const bad of ["0", "-1", "1.5", "8GiB"]) {
    throws(() => limitFlags({ "max-slug-unpacked-bytes": bad }), UsageError, bad);
  }
  deepEqual(limitFlags({ "log-quota-per-run": "256 MiB" }), { logQuotaBytes: 256 * 1024 ** 2 });
  deepEqual(limitFlags({ "log-quota-per-run": "4096" }), { logQuotaBytes: 4096 });
  throws(() => limitFlags({ "log-quota-per-run": "lots" }), UsageError, "lots");
  deepEqual(limitFlags({ "max-artifact-bytes": "2GiB" }), { maxArtifactBytes: 2 * 1024 ** 3 });
  throws(() => limitFlags({ "max-artifact-bytes": "0" }), UsageError, "--max-artifact-bytes");
  deepEqual(limitFlags({ "audit-quota-per-session": "1GiB" }), { auditQuotaBytes: 1024 ** 3 });
  throws(() => limitFlags({ "audit-quota-per-session": "0" }), UsageError, "0");
  deepEqual(limitFlags({ "reattach-grace": "5s" }), { reattachGraceMs: 5_000 });
  for (const bad of ["0s", "25d", "soon"]) {
    throws(() => limitFlags({ "reattach-grace": bad }), UsageError, bad);
  }
});
