import { deepEqual, throws } from "node:assert/strict";
import { UsageError } from "../cli/_io.ts";
import { joinTokenFlags } from "./server.ts";

Deno.test("join token flags: uses a positive integer, a ttl a duration, auto-approve a switch", () => {
  deepEqual(joinTokenFlags({}), {});
  deepEqual(
    joinTokenFlags({ "join-token-uses": "3", "join-token-ttl": "2h", "auto-approve": true }),
    { joinTokenUses: 3, joinTokenTtlMs: 2 * 3600_000, autoApprove: true },
  );
  throws(() => joinTokenFlags({ "join-token-uses": "0" }), UsageError);
  throws(() => joinTokenFlags({ "join-token-ttl": "soon" }), /Invalid --join-token-ttl "soon"/);
});
