/**
 * What a benchmark case is and what it is handed: the list in bench/main.ts
 * is made of these, so adding one is one entry there.
 * @module
 */
import { startSystem, type TestSystem } from "../tests/_system.ts";

/** What every case gets from the runner. */
export interface BenchContext {
  /** `--quick`: small sizes and few rounds, for CI (figures mean little). */
  quick: boolean;
  /** A server and agent in this process, recording on; started on first use, shared. */
  system(): Promise<TestSystem>;
  /** The same with recording off; started on first use, shared. */
  plainSystem(): Promise<TestSystem>;
  /** A PostgreSQL URL (`--postgres` or ONEOFF_TEST_POSTGRES), if any. */
  postgres: string | undefined;
  /** `--sessions N`. */
  sessions: number;
  /** `full` in a full run, `quick` with --quick. */
  pick<T>(full: T, quick: T): T;
}

/** One benchmark: `--only NAME` selects it. */
export interface BenchCase {
  name: string;
  /** One line for `--help`. */
  about: string;
  run(ctx: BenchContext): Promise<void>;
}

/** A context whose systems start when first asked for; dispose it to stop them. */
export function benchContext(
  options: { quick: boolean; postgres: string | undefined; sessions: number },
): BenchContext & AsyncDisposable {
  let recorded: Promise<TestSystem> | undefined;
  let plain: Promise<TestSystem> | undefined;
  return {
    ...options,
    system: () => recorded ??= startSystem(),
    plainSystem: () => plain ??= startSystem({ record: false }),
    pick: (full, quick) => options.quick ? quick : full,
    async [Symbol.asyncDispose]() {
      for (const sys of [recorded, plain]) {
        if (sys) await (await sys)[Symbol.asyncDispose]();
      }
    },
  };
}
