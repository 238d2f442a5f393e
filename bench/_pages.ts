/**
 * `pages`: the dashboard's pages for an app with 10,000 runs (and as many
 * timeline events) in SQLite, rendered in this process, against the same
 * pages for an app with one page of runs: a page must cost what it shows,
 * not what the app holds.
 * @module
 */
import { runLabel } from "../protocol/mod.ts";
import {
  type CookieClient,
  type DashboardTest,
  dashboardTest,
  seedApp,
  seedRun,
} from "../server/dashboard/_test_util.ts";
import type { BenchContext } from "./_case.ts";
import { rounds, row, spread } from "./_util.ts";

/** One page of the app page and of the timeline. */
const SMALL = 50;
const TARGET = "≤ 200 ms  (baseline: the same page, 50 runs)";

/** A dashboard whose one app `name` has `runs` ended runs, each with its timeline event. */
async function seeded(name: string, runs: number): Promise<DashboardTest> {
  const d = await dashboardTest();
  const { store } = d.t.ctx;
  const { app, release } = await seedApp(store, name);
  for (let i = 0; i < runs; i++) {
    const run = await seedRun(store, app, release, `echo ${i}`);
    // Ended, as nearly all of a real app's runs are (the apps list loads the live ones).
    const now = new Date();
    await store.updateRun(run.id, ["pending"], {
      state: "exited",
      exit_code: 0,
      started_at: now,
      ended_at: now,
    });
    await store.addEvent({
      app_id: app.id,
      app_name: name,
      actor: "admin",
      kind: "run.created",
      data: {
        run: runLabel(run.number),
        command: run.command,
        attached: false,
        size: "M",
        env_keys: [],
      },
    });
  }
  return d;
}

/** Renders `path` once: the time in ms; throws unless HTTP 200. */
async function render(client: CookieClient, path: string): Promise<number> {
  const start = performance.now();
  const page = await client.page(path);
  const ms = performance.now() - start;
  if (page.status !== 200) throw new Error(`GET ${path}: HTTP ${page.status}`);
  return ms;
}

function ms(value: number): string {
  return `${value.toFixed(1)} ms`;
}

/** Prints the render time of each page with 10,000 runs next to the same page with 50. */
export async function benchPages(ctx: BenchContext): Promise<void> {
  const BIG = ctx.pick(10_000, 200);
  const samples = ctx.pick(20, 2);
  await using big = await seeded("big", BIG);
  await using small = await seeded("small", SMALL);
  const bigClient = await big.signedIn();
  const smallClient = await small.signedIn();
  // The first render also compiles the page code: shown alone, not in the medians.
  const cold = await render(bigClient, "/apps/big");
  await render(smallClient, "/apps/small");
  const middle = BIG / 2;
  const pages: [name: string, bigPath: string, smallPath: string][] = [
    ["app, newest", "/apps/big", "/apps/small"],
    [`app, before ${middle}`, `/apps/big?before=${middle}`, "/apps/small"],
    ["timeline, newest", "/apps/big/timeline", "/apps/small/timeline"],
    [`timeline, before ${middle}`, `/apps/big/timeline?before=${middle}`, "/apps/small/timeline"],
    ["apps list (/)", "/", "/"],
  ];
  row(`page, ${BIG} runs: first render`, ms(cold), "-", "-", "-  (includes compiling the page)");
  for (const [name, bigPath, smallPath] of pages) {
    const ours = await rounds(samples, () => render(bigClient, bigPath), 0);
    const base = await rounds(samples, () => render(smallClient, smallPath), 0);
    row(
      `page, ${BIG} runs: ${name}`,
      ms(ours.median),
      ms(base.median),
      `${(ours.median / base.median).toFixed(2)}x`,
      TARGET,
      spread(ours),
    );
  }
}
