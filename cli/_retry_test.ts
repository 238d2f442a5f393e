import { deepEqual, equal, rejects } from "node:assert/strict";
import { isTransientNetworkError, networkReason, retrying, TransientError } from "./_retry.ts";

Deno.test("a transient failure is retried until the attempt succeeds", async () => {
  let tries = 0;
  const value = await retrying(() => {
    tries++;
    if (tries < 3) throw new TransientError("connection refused");
    return Promise.resolve("ok");
  }, { quiet: true });
  deepEqual([value, tries], ["ok", 3]);
});

Deno.test("retrying gives up after its bound with the last transient failure", async () => {
  let tries = 0;
  await rejects(
    retrying(() => {
      tries++;
      throw new TransientError("HTTP 503");
    }, { forMs: 300, quiet: true }),
    (e: unknown) => e instanceof TransientError && e.reason === "HTTP 503",
  );
  // 250 ms, then the 50 ms left of the bound: three tries.
  equal(tries, 3);
});

Deno.test("a failure that is not transient is thrown at once", async () => {
  let tries = 0;
  await rejects(
    retrying(() => {
      tries++;
      throw new Error("Unknown app");
    }, { quiet: true }),
    /Unknown app/,
  );
  equal(tries, 1);
});

Deno.test("a failed fetch is named by what happened to the connection", () => {
  const refused = new TypeError("fetch failed", {
    cause: new Error("tcp connect error: Connection refused (os error 111)"),
  });
  equal(networkReason(refused), "connection refused");
  const reset = new TypeError("fetch failed", { cause: new Error("connection reset by peer") });
  equal(networkReason(reset), "connection reset");
  equal(networkReason(new DOMException("Signal timed out.", "TimeoutError")), "no answer in time");
});

Deno.test("a request Deno refuses to send is not retried", () => {
  equal(
    isTransientNetworkError(new TypeError("Fetch failed: Requests to port 1 are blocked")),
    false,
  );
  equal(isTransientNetworkError(new TypeError("fetch failed")), true);
});
