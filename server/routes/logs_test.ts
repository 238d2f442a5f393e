import { deepEqual, equal } from "node:assert/strict";
import { testServer } from "../_testing.ts";

Deno.test("logs page backwards with before, and say when older lines remain or n was cut", async () => {
  await using t = await testServer();
  await t.call("POST", "/api/apps", { name: "demo" });
  const app = (await t.ctx.store.appByName("demo"))!;
  await t.ctx.store.appendLogs(
    app.id,
    Array.from({ length: 25 }, (_, i) => ({
      run_id: "r1",
      seq: i,
      ts: new Date(Date.UTC(2026, 0, 1, 0, 0, i)),
      source: "one-off-1",
      stream: "stdout",
      line: `line ${i}`,
    })),
  );
  const read = async (query: string) =>
    await (await t.call("GET", `/api/apps/demo/logs?${query}`)).json();

  const pages: string[][] = [];
  let page = await read("n=10");
  pages.push(page.lines.map((l: { line: string }) => l.line));
  while (page.more) {
    equal(page.before, page.lines[0].id);
    page = await read(`n=10&before=${page.before}`);
    pages.push(page.lines.map((l: { line: string }) => l.line));
  }
  deepEqual(pages.map((p) => [p[0], p.length]), [["line 15", 10], ["line 5", 10], [
    "line 0",
    5,
  ]]);
  deepEqual([page.more, page.before, page.truncated], [false, null, false]);
  deepEqual(pages.reverse().flat(), Array.from({ length: 25 }, (_, i) => `line ${i}`));

  const big = await read("n=300000");
  deepEqual([big.lines.length, big.more, big.truncated], [25, false, true]);
  const both = await t.call("GET", "/api/apps/demo/logs?after=1&before=5");
  equal(both.status, 422);
  await both.body?.cancel();
});
