/**
 * One small structured logger: JSON lines on stderr for the server and the
 * agent. The CLI prints human text itself and does not use this.
 * @module
 */

/** Severity of a log entry. */
export type Level = "debug" | "info" | "warn" | "error";

const ORDER: Record<Level, number> = { debug: 10, info: 20, warn: 30, error: 40 };

/** A logger bound to one component. */
export interface Logger {
  debug(msg: string, fields?: Record<string, unknown>): void;
  info(msg: string, fields?: Record<string, unknown>): void;
  warn(msg: string, fields?: Record<string, unknown>): void;
  error(msg: string, fields?: Record<string, unknown>): void;
  /** A logger for a sub-component, with the same sink. */
  child(component: string): Logger;
}

/** Where log lines go; tests pass an array collector. */
export type Sink = (line: string) => void;

const encoder = new TextEncoder();

function stderrSink(line: string): void {
  Deno.stderr.writeSync(encoder.encode(line + "\n"));
}

/** Creates a JSON-lines logger; `ONEOFF_LOG=debug|info|warn|error|silent` sets the level. */
export function createLogger(
  component: string,
  options: { sink?: Sink; level?: Level | "silent" } = {},
): Logger {
  const sink = options.sink ?? stderrSink;
  const env = options.level ?? readLevel();
  const min = env === "silent" ? Infinity : ORDER[env];
  function emit(level: Level, msg: string, fields?: Record<string, unknown>): void {
    if (ORDER[level] < min) return;
    sink(JSON.stringify({ time: new Date().toISOString(), level, component, msg, ...fields }));
  }
  return {
    debug: (msg, fields) => emit("debug", msg, fields),
    info: (msg, fields) => emit("info", msg, fields),
    warn: (msg, fields) => emit("warn", msg, fields),
    error: (msg, fields) => emit("error", msg, fields),
    child: (sub) => createLogger(`${component}.${sub}`, { sink, level: env }),
  };
}

function readLevel(): Level | "silent" {
  let value: string | undefined;
  try {
    value = Deno.env.get("ONEOFF_LOG");
  } catch {
    value = undefined;
  }
  if (value === "debug" || value === "info" || value === "warn" || value === "error") return value;
  if (value === "silent") return "silent";
  return "info";
}

/** The message of an unknown thrown value, for logs and error lines. */
export function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
