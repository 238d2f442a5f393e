import { deepEqual, equal, ok } from "node:assert/strict";
import { SIGNAL_COALESCE_MS, Signals, type SignalTransport } from "./signals.ts";
import { waitFor } from "../tests/_wait.ts";

function fakeTransport() {
  const published: string[] = [];
  let wake: (key: string) => void = () => {};
  const transport: SignalTransport = {
    publish: (key) => published.push(key),
    subscribe: (fn) => wake = fn,
  };
  return { transport, published, remote: (key: string) => wake(key) };
}

Deno.test("a burst of notifications of one key is published once, then once more at the window's end", async () => {
  const { transport, published } = fakeTransport();
  const signals = new Signals({ transport });
  for (let i = 0; i < 10_000; i++) signals.notify("logs:1");
  signals.notify("run:a");
  deepEqual(published, ["logs:1", "run:a"]);
  await waitFor(() => published.length === 3, { message: "the trailing publish" });
  deepEqual(published, ["logs:1", "run:a", "logs:1"]);
  await new Promise((resolve) => setTimeout(resolve, SIGNAL_COALESCE_MS * 3));
  equal(published.length, 3, "nothing more once the burst is over");
  signals.close();
});

Deno.test("a key another server published wakes this server's waiters and remote listeners", async () => {
  const { transport, published, remote } = fakeTransport();
  const signals = new Signals({ transport });
  let heard = 0;
  signals.onRemote("queue", () => heard++);
  const woken = signals.wait("run:x", 5_000);
  remote("run:x");
  remote("queue");
  ok(await woken);
  equal(heard, 1);
  deepEqual(published, [], "a remote wake-up is not published again");
  signals.close();
});
