/**
 * Timeline events: every change to an app, with its actor; what each kind
 * carries, and how it reads, in words the CLI and the dashboard share.
 * @module
 */
import { bytes, duration, durationFlag } from "../util/format.ts";
import {
  parseRunLabel,
  type Role,
  RUN_STATES,
  type RunState,
  SIZE_NAMES,
  type SizeName,
} from "./run.ts";

/** What each kind of event the server writes carries, by kind. */
export interface TimelineEventData {
  "app.created": Record<string, never>;
  "app.destroyed": Record<string, never>;
  "deploy": { release: number; sha256: string; size: number; process_types: string[] };
  /** Only the keys: values may be secrets. */
  "env.set": { keys: string[] };
  "env.unset": { keys: string[] };
  "run.created": {
    run: string;
    command: string;
    attached: boolean;
    size: SizeName;
    env_keys: string[];
    /** The reason its user gave (`--reason`), when one was. */
    reason?: string;
  };
  "run.ended": {
    run: string;
    command: string;
    state: RunState;
    exit_code: number | null;
    reason: string | null;
    duration_ms: number | null;
  };
  /** A run marked lost turned out alive when its agent came back: it is running again. */
  "run.recovered": { run: string; command: string };
  /** A run's end reported `lines` log lines, and `missing` of them never reached the store. */
  "run.logs_missing": { run: string; missing: number; lines: number };
  /**
   * The files a run left in `/tmp/downloads` at its end: `files` kept
   * (`bytes` in all), and each one refused as `"NAME": reason`.
   */
  "run.artifacts": { run: string; files: number; bytes: number; refused: string[] };
  /** A stop was asked for; `run.ended` follows when it took effect. */
  "run.stop": { run: string };
  /** A framed session's client came back (or another terminal took it over) from `address`. */
  "run.reattached": { run: string; address: string };
  /** Someone started watching a running attached session (`oneoff watch`, the dashboard). */
  "run.watch_started": { run: string };
  /** ...and stopped, after `duration_ms`. */
  "run.watch_ended": { run: string; duration_ms: number };
  /** Someone displayed a run's session recording, in this format. */
  "audit.viewed": { run: string; format: string };
  /**
   * Someone searched the app's session recordings of the last `since_ms`:
   * `sessions` searched, `hits` found. Never the text searched for, which
   * may be a secret.
   */
  "audit.searched": { sessions: number; hits: number; since_ms: number };
  /** An admin rotated the audit key; `key` is the new key's id. */
  "audit.key_rotated": { key: string };
  "token.created": { role: Role; name: string };
  "token.revoked": { role: Role; name: string };
  /** An admin approved an enrolled agent (`agent` is its name): it takes runs now. */
  "agent.approved": { agent: string };
  /** An admin revoked an agent: its channel closed, its credential no longer works. */
  "agent.revoked": { agent: string };
  /** An admin rotated the join token: the old one no longer enrols. */
  "join_token.rotated": Record<string, never>;
  /**
   * Someone changed app settings: each `setting` (e.g. `idle-timeout`) from
   * one value to another, as the CLI shows them (`30m`, `default`, `5432,6379`).
   */
  "app.settings": { changes: { setting: string; from: string; to: string }[] };
  /**
   * The app's logs went past its byte quota: its oldest `lines` (`bytes`)
   * were removed, down to the `quota` bytes it may keep.
   */
  "logs.trimmed": { lines: number; bytes: number; quota: number };
}

/** A kind of event the server writes. */
export type TimelineEventKind = keyof TimelineEventData;

/** The kind and data of an event the server writes, which belong together. */
export type TimelineEventBody = {
  [K in TimelineEventKind]: { kind: K; data: TimelineEventData[K] };
}[TimelineEventKind];

/**
 * Kind and data as a stored row holds them before {@linkcode isKnownEvent}
 * checked them: rows written by older code may carry kinds or data that the
 * server no longer writes.
 */
export interface UncheckedEventBody {
  kind: string;
  data: Record<string, unknown>;
}

/** A timeline event as the API shows it. */
export type TimelineEvent =
  & {
    id: number;
    at: string;
    app: string | null;
    actor: string;
  }
  & (TimelineEventBody | UncheckedEventBody);

type Check = (value: unknown) => boolean;

const ROLES: readonly Role[] = ["admin", "member"];

function isString(value: unknown): boolean {
  return typeof value === "string";
}

function isNumber(value: unknown): boolean {
  return typeof value === "number";
}

function isStrings(value: unknown): boolean {
  return Array.isArray(value) && value.every(isString);
}

function isRun(value: unknown): boolean {
  return typeof value === "string" && parseRunLabel(value) !== null;
}

function oneOf(values: readonly unknown[]): Check {
  return (value) => values.includes(value);
}

function orNull(check: Check): Check {
  return (value) => value === null || check(value);
}

// A check for every field of every kind: the compiler sees that none is missed.
const CHECKS: { [K in TimelineEventKind]: { [F in keyof TimelineEventData[K]]-?: Check } } = {
  "app.created": {},
  "app.destroyed": {},
  "deploy": { release: isNumber, sha256: isString, size: isNumber, process_types: isStrings },
  "env.set": { keys: isStrings },
  "env.unset": { keys: isStrings },
  "run.created": {
    run: isRun,
    command: isString,
    attached: (value) => typeof value === "boolean",
    size: oneOf(SIZE_NAMES),
    env_keys: isStrings,
    reason: (value) => value === undefined || isString(value),
  },
  "run.ended": {
    run: isRun,
    command: isString,
    state: oneOf(RUN_STATES),
    exit_code: orNull(isNumber),
    reason: orNull(isString),
    duration_ms: orNull(isNumber),
  },
  "run.recovered": { run: isRun, command: isString },
  "run.logs_missing": { run: isRun, missing: isNumber, lines: isNumber },
  "run.artifacts": { run: isRun, files: isNumber, bytes: isNumber, refused: isStrings },
  "run.stop": { run: isRun },
  "run.reattached": { run: isRun, address: isString },
  "run.watch_started": { run: isRun },
  "run.watch_ended": { run: isRun, duration_ms: isNumber },
  "audit.viewed": { run: isRun, format: isString },
  "audit.searched": { sessions: isNumber, hits: isNumber, since_ms: isNumber },
  "audit.key_rotated": { key: isString },
  "token.created": { role: oneOf(ROLES), name: isString },
  "token.revoked": { role: oneOf(ROLES), name: isString },
  "agent.approved": { agent: isString },
  "agent.revoked": { agent: isString },
  "join_token.rotated": {},
  "app.settings": { changes: isChanges },
  "logs.trimmed": { lines: isNumber, bytes: isNumber, quota: isNumber },
};

function isChanges(value: unknown): boolean {
  return Array.isArray(value) &&
    value.every((change) =>
      typeof change === "object" && change !== null &&
      isString(change.setting) && isString(change.from) && isString(change.to)
    );
}

/** Whether a stored event is of a kind the server writes, with the data that kind carries. */
export function isKnownEvent<E extends UncheckedEventBody>(
  event: E,
): event is E & TimelineEventBody {
  if (!Object.hasOwn(CHECKS, event.kind)) return false;
  const checks: Record<string, Check> = CHECKS[event.kind as TimelineEventKind];
  const data: unknown = event.data;
  if (typeof data !== "object" || data === null || Array.isArray(data)) return false;
  return Object.entries(checks).every(([field, check]) =>
    check((data as Record<string, unknown>)[field])
  );
}

/**
 * What a piece of an event's sentence is, so that each reader can show it its
 * way: `run` is a run's label (a link on the dashboard), `name` an env key or
 * process type, `command` a run's command, `release` a release (`v4`),
 * `state` and `exit` a run's end state and exit code, `note` an aside in
 * parentheses, `reason` the reason a run's user gave, `data` the raw data of
 * an event no sentence fits.
 */
export type SegmentType =
  | "text"
  | "run"
  | "name"
  | "command"
  | "release"
  | "state"
  | "exit"
  | "note"
  | "reason"
  | "data";

/** One piece of an event's sentence; the sentence is the pieces' texts joined. */
export interface Segment {
  type: SegmentType;
  text: string;
}

function seg(type: SegmentType, text: string): Segment {
  return { type, text };
}

function text(value: string): Segment {
  return seg("text", value);
}

function names(list: string[]): Segment[] {
  return list.flatMap((name, i) => i === 0 ? [seg("name", name)] : [text(", "), seg("name", name)]);
}

/**
 * What an event did, in a sentence that follows its actor ("alice" "set A, B").
 * Kinds the server no longer writes, or data that does not fit its kind, read
 * as the kind and the data as they are.
 */
export function describeEvent(event: UncheckedEventBody): Segment[] {
  if (!isKnownEvent(event)) {
    const json = JSON.stringify(event.data ?? null);
    return json === "{}" ? [text(event.kind)] : [text(`${event.kind} `), seg("data", json)];
  }
  switch (event.kind) {
    case "app.created":
      return [text("created the app")];
    case "app.destroyed":
      return [text("destroyed the app")];
    case "deploy": {
      const { release, size, process_types: types } = event.data;
      return [
        text("deployed release "),
        seg("release", `v${release}`),
        seg("note", ` (${bytes(size)})`),
        ...(types.length > 0 ? [text(" with process types "), ...names(types)] : []),
      ];
    }
    case "env.set":
      return [text("set "), ...names(event.data.keys)];
    case "env.unset":
      return [text("unset "), ...names(event.data.keys)];
    case "run.created": {
      const d = event.data;
      return [
        text("started "),
        seg("run", d.run),
        text(` ${d.attached ? "attached" : "detached"}, size ${d.size}: `),
        seg("command", d.command),
        ...(d.env_keys.length > 0 ? [text(" with "), ...names(d.env_keys)] : []),
        ...(d.reason !== undefined ? [text(", because: "), seg("reason", d.reason)] : []),
      ];
    }
    case "run.ended": {
      const d = event.data;
      return [
        seg("run", d.run),
        text(" ended "),
        seg("state", d.state),
        ...(d.exit_code === null ? [] : [text(" with exit code "), seg("exit", `${d.exit_code}`)]),
        ...(d.duration_ms === null ? [] : [text(` after ${duration(d.duration_ms)}`)]),
        ...(d.reason ? [seg("note", ` (${d.reason})`)] : []),
        text(": "),
        seg("command", d.command),
      ];
    }
    case "run.recovered":
      return [
        seg("run", event.data.run),
        text(" is running again"),
        seg("note", " (marked lost, but its agent came back still running it)"),
        text(": "),
        seg("command", event.data.command),
      ];
    case "run.logs_missing": {
      const { run, missing, lines } = event.data;
      return [
        seg("run", run),
        text(` is missing ${missing} of its ${lines} log lines`),
        seg("note", " (they never reached the server's store)"),
      ];
    }
    case "run.artifacts": {
      const { run, files, bytes: size, refused } = event.data;
      return [
        text("kept "),
        text(`${files} file${files === 1 ? "" : "s"} (${bytes(size)}) of `),
        seg("run", run),
        ...(refused.length > 0 ? [seg("note", ` (refused: ${refused.join("; ")})`)] : []),
      ];
    }
    case "run.stop":
      return [text("asked "), seg("run", event.data.run), text(" to stop")];
    case "run.reattached":
      return [
        text("reattached to "),
        seg("run", event.data.run),
        seg("note", ` (from ${event.data.address})`),
      ];
    case "run.watch_started":
      return [text("started watching "), seg("run", event.data.run)];
    case "run.watch_ended":
      return [
        text("stopped watching "),
        seg("run", event.data.run),
        text(` after ${duration(event.data.duration_ms)}`),
      ];
    case "audit.viewed":
      return [
        text("viewed the session recording of "),
        seg("run", event.data.run),
        seg("note", ` (${event.data.format})`),
      ];
    case "audit.searched": {
      const { sessions, hits, since_ms: since } = event.data;
      return [
        text(`searched ${sessions} session recording${sessions === 1 ? "" : "s"} `),
        text(`of the last ${durationFlag(since)}: ${hits} hit${hits === 1 ? "" : "s"}`),
        seg("note", " (the text searched for is not kept)"),
      ];
    }
    case "audit.key_rotated":
      return [text("rotated the audit key, now "), seg("name", event.data.key)];
    case "token.created": {
      const { role, name } = event.data;
      return [text(`created ${role === "admin" ? "an" : "a"} ${role} token "${name}"`)];
    }
    case "token.revoked": {
      const { role, name } = event.data;
      return [text(`revoked ${role === "admin" ? "an" : "a"} ${role} token "${name}"`)];
    }
    case "agent.approved":
      return [text(`approved the agent "${event.data.agent}"`)];
    case "agent.revoked":
      return [text(`revoked the agent "${event.data.agent}"`)];
    case "join_token.rotated":
      return [text("rotated the join token")];
    case "app.settings":
      return [
        text("set "),
        ...event.data.changes.flatMap((c, i) => [
          ...(i === 0 ? [] : [text(", ")]),
          seg("name", c.setting),
          text(` from ${c.from} to ${c.to}`),
        ]),
      ];
    case "logs.trimmed": {
      const { lines, bytes: removed, quota } = event.data;
      return [
        text(`removed the app's oldest ${lines} log lines (${bytes(removed)})`),
        seg("note", ` (over the server's log quota of ${bytes(quota)} per app)`),
      ];
    }
  }
}

/** An event's sentence as plain text, e.g. `deployed release v3 (1.2 MiB) with process types web`. */
export function eventText(event: UncheckedEventBody): string {
  return describeEvent(event).map((s) => s.text).join("");
}
