/**
 * Tiny decoders for what crosses the wire: each checks an `unknown` (parsed
 * JSON) and returns it typed, or throws a {@link DecodeError} naming the
 * field and what is wrong. Hand-written rather than a schema library: the
 * whole protocol needs a dozen combinators, the messages must read like the
 * API's other errors, and the CLI starts without loading anything more.
 * @module
 */

/** Why a value was refused: one readable line, and a code for the HTTP API. */
export class DecodeError extends Error {
  /** The API error code (`invalid` unless a field says otherwise). */
  readonly code: string;
  constructor(message: string, code = "invalid") {
    super(message);
    this.name = "DecodeError";
    this.code = code;
  }
}

/**
 * Checks `value`, found at `field` (a dotted path, "" for the whole value),
 * and returns it typed; throws a {@link DecodeError} otherwise.
 */
export type Decoder<T> = (value: unknown, field: string) => T;

/** The type a decoder returns. */
export type Decoded<D> = D extends Decoder<infer T> ? T : never;

/** Either the decoded value or the line saying what was wrong. */
export type Decoding<T> =
  | { ok: true; value: T }
  | { ok: false; error: string; code: string };

/** Throws the standard error: `Field "x" must be a string`. */
export function fail(field: string, problem: string): never {
  throw new DecodeError(field === "" ? `Value ${problem}` : `Field "${field}" ${problem}`);
}

/** The path of a member of `field`. */
function member(field: string, key: string | number): string {
  if (typeof key === "number") return `${field}[${key}]`;
  return field === "" ? key : `${field}.${key}`;
}

/** A string. */
export const string: Decoder<string> = (value, field) =>
  typeof value === "string" ? value : fail(field, "must be a string");

/** A boolean. */
export const boolean: Decoder<boolean> = (value, field) =>
  typeof value === "boolean" ? value : fail(field, "must be true or false");

/** A finite number. */
export const number: Decoder<number> = (value, field) =>
  typeof value === "number" && Number.isFinite(value) ? value : fail(field, "must be a number");

/** A safe integer. */
export const integer: Decoder<number> = (value, field) =>
  Number.isSafeInteger(value) ? value as number : fail(field, "must be an integer");

/** One of the given strings. */
export function oneOf<const T extends string>(values: readonly T[]): Decoder<T> {
  const allowed: ReadonlySet<string> = new Set(values);
  return (value, field) =>
    typeof value === "string" && allowed.has(value)
      ? value as T
      : fail(field, `must be one of ${values.join(", ")}`);
}

/** A list whose every item passes `item`. */
export function array<T>(item: Decoder<T>): Decoder<T[]> {
  return (value, field) => {
    if (!Array.isArray(value)) fail(field, "must be a list");
    return value.map((one, i) => item(one, member(field, i)));
  };
}

/** A plain JSON object, not null or a list. */
function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** An object used as a map: every value passes `item`. */
export function record<T>(item: Decoder<T>): Decoder<Record<string, T>> {
  return (value, field) => {
    if (!isObject(value)) fail(field, "must be an object");
    // fromEntries defines a "__proto__" key as data, never as the prototype.
    return Object.fromEntries(
      Object.entries(value).map(([key, one]) => [key, item(one, member(field, key))]),
    );
  };
}

type Shape = Record<string, Decoder<unknown>>;
type Out<S extends Shape> = { [K in keyof S]: Decoded<S[K]> };
type OptionalOut<S extends Shape> = { [K in keyof S]?: Exclude<Decoded<S[K]>, undefined> };
type Merge<T> = { [K in keyof T]: T[K] };

/**
 * An object with `required` fields and `optional` ones. The result holds
 * only the fields named here; an optional field that is absent or null (or
 * that a {@link lenient} decoder let go) is left out.
 */
export function object<R extends Shape, O extends Shape = Record<never, never>>(
  required: R,
  optional?: O,
): Decoder<Merge<Out<R> & OptionalOut<O>>> {
  const must = Object.entries(required);
  const may = Object.entries(optional ?? {});
  return (value, field) => {
    if (!isObject(value)) fail(field, "must be an object");
    const out: Record<string, unknown> = {};
    for (const [key, decode] of must) out[key] = decode(value[key], member(field, key));
    for (const [key, decode] of may) {
      const one = value[key];
      if (one === undefined || one === null) continue;
      const decoded = decode(one, member(field, key));
      if (decoded !== undefined) out[key] = decoded;
    }
    return out as Merge<Out<R> & OptionalOut<O>>;
  };
}

/**
 * A union of objects told apart by their `type` field: `cases` maps each
 * type to the decoder of the rest.
 */
export function byType<C extends Record<string, Decoder<object>>>(
  cases: C,
): Decoder<{ [K in keyof C]: Merge<{ type: K } & Decoded<C[K]>> }[keyof C]> {
  return (value, field) => {
    if (!isObject(value)) fail(field, "must be an object");
    const type = value.type;
    if (typeof type !== "string") fail(member(field, "type"), "must be a string");
    const decode = Object.hasOwn(cases, type) ? cases[type] : undefined;
    if (decode === undefined) {
      throw new DecodeError(`Unknown message type "${type}"`);
    }
    return { type, ...decode(value, field) } as never;
  };
}

/**
 * `decoder`, but refused unless `ok(value)` is true; otherwise `ok` returns
 * the problem, completing `Field "x" ...`.
 */
export function check<T>(decoder: Decoder<T>, ok: (value: T) => true | string): Decoder<T> {
  return (value, field) => {
    const decoded = decoder(value, field);
    const verdict = ok(decoded);
    return verdict === true ? decoded : fail(field, verdict);
  };
}

/**
 * `decoder`, but whatever it refuses is reported with this code and
 * message instead (given the raw value), for fields whose errors the API
 * has always worded its own way.
 */
export function refusing<T>(
  decoder: Decoder<T>,
  refusal: { code: string; message: (value: unknown) => string },
): Decoder<T> {
  return (value, field) => {
    try {
      return decoder(value, field);
    } catch (err) {
      if (err instanceof DecodeError) throw new DecodeError(refusal.message(value), refusal.code);
      throw err;
    }
  };
}

/** `decoder`, or undefined where it refuses: for fields where a bad value means "use the default". */
export function lenient<T>(decoder: Decoder<T>): Decoder<T | undefined> {
  return (value, field) => {
    try {
      return decoder(value, field);
    } catch (err) {
      if (err instanceof DecodeError) return undefined;
      throw err;
    }
  };
}

/** Runs a decoder on a value, the error as a value. */
export function decodeValue<T>(decoder: Decoder<T>, value: unknown): Decoding<T> {
  try {
    return { ok: true, value: decoder(value, "") };
  } catch (err) {
    if (err instanceof DecodeError) return { ok: false, error: err.message, code: err.code };
    throw err;
  }
}

/** Parses JSON text and decodes it, the error as a value. */
export function decodeJson<T>(decoder: Decoder<T>, text: string): Decoding<T> {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return { ok: false, error: "Not valid JSON", code: "bad_json" };
  }
  return decodeValue(decoder, value);
}
