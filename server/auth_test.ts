import { deepEqual } from "node:assert/strict";
import { failureKeys, FailureLimiter, sha256Hex } from "./auth.ts";

Deno.test("the limiter blocks a key past its limit for the window, then lets it go", () => {
  let now = 0;
  const limiter = new FailureLimiter({ limit: 3, windowMs: 60_000, now: () => now });
  const keys = failureKeys("127.0.0.1", sha256Hex("oo_bad"));
  for (let i = 0; i < 3; i++) {
    deepEqual(limiter.blocked(...keys), false, `after ${i}`);
    limiter.fail(...keys);
  }
  deepEqual(limiter.blocked(...keys), true);
  deepEqual(limiter.blocked(keys[0]!), true, "the address");
  deepEqual(limiter.blocked(keys[1]!), true, "the token");
  deepEqual(limiter.blocked("address:127.0.0.2"), false);
  now = 60_001;
  deepEqual(limiter.blocked(...keys), false);
});

Deno.test("failures count per address and per presented token's hash prefix", () => {
  const limiter = new FailureLimiter({ limit: 2 });
  const hash = sha256Hex("oo_revoked");
  deepEqual(failureKeys("10.0.0.1", hash), ["address:10.0.0.1", `token:${hash.slice(0, 8)}`]);
  limiter.fail(...failureKeys("10.0.0.1", hash));
  limiter.fail(...failureKeys("10.0.0.2", hash));
  deepEqual(limiter.blocked(...failureKeys("10.0.0.3", hash)), true, "the token, anywhere");
  deepEqual(limiter.blocked(...failureKeys("10.0.0.3", sha256Hex("oo_other"))), false);
});

Deno.test("a flood of distinct tokens keeps the limiter bounded and the flooder blocked", () => {
  const limiter = new FailureLimiter({ limit: 10 });
  for (let i = 0; i < 30_000; i++) {
    limiter.fail(...failureKeys("10.0.0.9", sha256Hex(`oo_guess-${i}`)));
  }
  deepEqual(limiter.blocked("address:10.0.0.9"), true);
  deepEqual(limiter.size <= 10_000, true, `${limiter.size} keys`);
});
