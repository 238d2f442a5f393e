/**
 * `search`: `audit search` over 200 recorded sessions (SQLite, in this
 * process; recordings stored through the audit ingest, encrypted), against
 * reading the same 200 transcripts one after the other (`audit show`): the
 * search costs the decryption and no more.
 * @module
 */
import { testServer } from "../server/_testing.ts";
import { recordFakeSession } from "../server/audit/_fake_sessions.ts";
import type { AuditSearchReply } from "../protocol/mod.ts";
import type { BenchContext } from "./_case.ts";
import { rounds, row, spread } from "./_util.ts";

/** Prints the time of one search over N sessions next to reading their transcripts. */
export async function benchSearch(ctx: BenchContext): Promise<void> {
  const count = ctx.pick(200, 20);
  const samples = ctx.pick(5, 1);
  await using t = await testServer();
  const app = await t.ctx.store.createApp("demo");
  const session = {
    typed: ["ls -l", "psql -c 'select * from orders limit 40'", "exit"],
    output: Array.from({ length: 40 }, (_, i) => ` ${i} | order ${i * 13} | paid | 2026-12-01`),
  };
  for (let i = 0; i < count; i++) await recordFakeSession(t.ctx, app, session);
  await recordFakeSession(t.ctx, app, { typed: ["echo bench-marker-1"] });
  const search = async () => {
    const start = performance.now();
    const res = await t.call("POST", "/api/apps/demo/audit/search", { text: "bench-marker-1" });
    const reply: AuditSearchReply = await res.json();
    if (reply.results.length !== 1) throw new Error(`search found ${reply.results.length}`);
    return performance.now() - start;
  };
  const transcripts = async () => {
    const start = performance.now();
    for (let n = 1; n <= count + 1; n++) {
      const res = await t.call("GET", `/api/apps/demo/runs/one-off-${n}/audit.txt`);
      await res.text();
    }
    return performance.now() - start;
  };
  const ours = await rounds(samples, search, 1);
  const base = await rounds(samples, transcripts, 1);
  row(
    `audit search, ${count + 1} sessions`,
    `${ours.median.toFixed(0)} ms`,
    `${base.median.toFixed(0)} ms`,
    `${(ours.median / base.median).toFixed(2)}x`,
    "≤ 1 s  (baseline: each transcript read)",
    spread(ours),
  );
}
