import { deepEqual, equal, match } from "node:assert/strict";
/**
 * The CLI against a small fake of the server's API, for what it does with
 * the answers: retries on 503, logs paged backwards, queued runs in `ps`.
 * @module
 */
import { cli } from "./_processes.ts";

/** A fake API on a port of its own; `handler` answers paths under /api. */
function fakeServer(handler: (url: URL) => Response) {
  const server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen() {} },
    (req) => handler(new URL(req.url)),
  );
  return {
    env: {
      ONEOFF_SERVER: `http://127.0.0.1:${server.addr.port}`,
      ONEOFF_TOKEN: "oo_test",
      HOME: "/nonexistent",
    },
    async [Symbol.asyncDispose]() {
      await server.shutdown();
    },
  };
}

const RUN = {
  id: "r1",
  app: "demo",
  label: "one-off-1",
  command: "rake db:migrate",
  state: "pending",
  attached: false,
  tty: false,
  size: "M",
  agent: null,
  exit_code: null,
  reason: null,
  actor: "admin",
  created_at: new Date().toISOString(),
  started_at: null,
  ended_at: null,
};

Deno.test("ps retries a 503 and says so once", async () => {
  let tries = 0;
  await using fake = fakeServer(() => {
    tries++;
    if (tries <= 2) {
      return Response.json({ error: { code: "store_unavailable", message: "Database down" } }, {
        status: 503,
      });
    }
    return Response.json({ runs: [RUN] });
  });
  const res = await cli(fake.env, ["ps", "-a", "demo"]);
  equal(res.code, 0, res.stderr);
  equal(tries, 3);
  equal(res.stderr, "oneoff: lost the server (HTTP 503: Database down), retrying…\n");
});

Deno.test("ps shows why and where a pending run waits", async () => {
  await using fake = fakeServer(() =>
    Response.json({
      runs: [
        { ...RUN, queued_reason: "app_limit", queue_position: 2 },
        { ...RUN, label: "one-off-2", state: "exited", exit_code: 0 },
      ],
    })
  );
  const res = await cli(fake.env, ["ps", "-a", "demo"]);
  equal(res.code, 0, res.stderr);
  match(res.stdout, /one-off-1\s+pending .*queued #2: the app is at its limit of one-offs\n/);
  match(res.stdout, /one-off-2\s+exited .* 0\n/);
});

/** `count` stored lines with ids 1..count, served 10,000 at most, paged with `before`. */
function logsServer(count: number, paging: boolean) {
  const asked: string[] = [];
  const fake = fakeServer((url) => {
    asked.push(url.search);
    const n = Math.min(Number(url.searchParams.get("n") ?? 100), 10_000);
    const before = Number(url.searchParams.get("before") ?? count + 1);
    const first = Math.max(1, before - n);
    const lines = [];
    for (let id = first; id < before; id++) {
      lines.push({
        id,
        ts: "2026-01-01T00:00:00Z",
        source: "one-off-1",
        stream: "stdout",
        line: `${id}`,
      });
    }
    const more = first > 1;
    return Response.json(
      paging ? { lines, more, before: more ? first : null, truncated: false } : { lines },
    );
  });
  return { ...fake, asked };
}

Deno.test("logs -n beyond one reply pages backwards and prints every line once, in order", async () => {
  await using fake = logsServer(25_000, true);
  const res = await cli(fake.env, ["logs", "-a", "demo", "-n", "22000"]);
  equal(res.code, 0, res.stderr);
  const ids = res.stdout.trimEnd().split("\n").map((l) => Number(l.split(": ")[1]));
  deepEqual([ids.length, ids[0], ids.at(-1)], [22_000, 3_001, 25_000]);
  equal(new Set(ids).size, ids.length);
  deepEqual(fake.asked, ["?n=10000", "?n=10000&before=15001", "?n=2000&before=5001"]);
});

Deno.test("logs -n beyond what a server without paging gives says so", async () => {
  await using fake = logsServer(25_000, false);
  const res = await cli(fake.env, ["logs", "-a", "demo", "-n", "300000"]);
  equal(res.code, 0, res.stderr);
  equal(res.stdout.trimEnd().split("\n").length, 10_000);
  equal(
    res.stderr,
    "oneoff: the server gave the last 10000 lines only; it cannot page further back\n",
  );
});
