/**
 * The few assertions the tests use (JSR's @std/assert is unreachable here).
 * @module
 */
import { deepStrictEqual } from "node:assert";

/** Throws unless `cond` is truthy. */
export function assert(cond: unknown, message = "Assertion failed"): asserts cond {
  if (!cond) throw new Error(message);
}

/** Deep equality, with a readable diff on failure. */
export function assertEquals<T>(actual: T, expected: T, message?: string): void {
  try {
    deepStrictEqual(actual, expected);
  } catch (e) {
    const detail = e instanceof Error ? e.message : String(e);
    throw new Error(message ? `${message}\n${detail}` : detail);
  }
}

/** Throws unless `text` matches `pattern`. */
export function assertMatch(text: string, pattern: RegExp, message?: string): void {
  if (!pattern.test(text)) {
    throw new Error(message ?? `${JSON.stringify(text)} does not match ${pattern}`);
  }
}

/** Resolves to the error `fn` rejects with, or throws when it does not. */
export async function assertRejects(fn: () => Promise<unknown>, pattern?: RegExp): Promise<Error> {
  try {
    await fn();
  } catch (e) {
    const err = e instanceof Error ? e : new Error(String(e));
    if (pattern && !pattern.test(err.message)) {
      throw new Error(`Rejected with "${err.message}", expected ${pattern}`);
    }
    return err;
  }
  throw new Error("Expected a rejection");
}
