/**
 * The HTTP API's JSON request bodies, with the one decoder per body the
 * server checks them with (the CLI builds the same types). Decoders check
 * shapes only; what needs the store (the release exists, the process type
 * is known, the upload was made) stays in the route.
 * @module
 */
import {
  array,
  boolean,
  check,
  DecodeError,
  type Decoder,
  decodeValue,
  type Decoding,
  integer,
  lenient,
  object,
  oneOf,
  refusing,
  string,
} from "./_decode.ts";
import {
  NAME_PATTERN,
  NETWORK_MODES,
  type NetworkMode,
  type Role,
  SIZE_NAMES,
  type SizeName,
} from "./run.ts";
import { labelsDecoder } from "./labels.ts";

/** `POST /apps`. */
export interface CreateAppBody {
  name: string;
}

/** `PATCH /apps/:app/env`: variables to set and keys to unset, at least one. */
export interface EnvChangeBody {
  set?: Record<string, string>;
  unset?: string[];
}

/**
 * `PATCH /apps/:app`: the app's settings to change, at least one. A null
 * duration goes back to the server's default. `network` and `host_ports`
 * are for admins only (they weaken the run's isolation); a member of the
 * app may change the durations.
 */
export interface AppSettingsBody {
  /** Attached runs with no byte either way for this long are stopped (ms). */
  idle_timeout_ms?: number | null;
  /** How long a framed session's dropped connection may be reattached (ms). */
  reattach_grace_ms?: number | null;
  network?: NetworkMode;
  /** Host loopback TCP ports an isolated run may reach; [] for none. */
  host_ports?: number[];
  /** Labels an agent must have to run the app's one-offs; {} for any agent (admins only). */
  labels?: Record<string, string>;
  /** Its runs must give a reason (`oneoff run --reason`). */
  require_reason?: boolean;
}

/** A file uploaded first (`POST /apps/:app/uploads`), to place in `/tmp/uploads`. */
export interface RunUploadBody {
  name: string;
  sha256: string;
}

/** `POST /apps/:app/runs`. */
export interface RunRequestBody {
  /** The command line; appended to the process type's command when `type` is given. */
  command?: string;
  /** A Procfile process type of the current release. */
  type?: string;
  attached?: boolean;
  tty?: boolean;
  /** Terminal size; a missing or unusable value means 80x24. */
  cols?: number;
  rows?: number;
  size?: SizeName;
  env?: Record<string, string>;
  uploads?: RunUploadBody[];
  /** Maximum duration in seconds. */
  timeout?: number;
  /** `TERM` inside the sandbox; a missing or unusable value means xterm-256color. */
  term?: string;
  /**
   * When the app is at its limit of live one-offs: true answers 429 at
   * once; otherwise (the default) the run waits in the queue, `pending`,
   * until a place frees up or the queue timeout.
   */
  fail_fast?: boolean;
  /** Why the run is made (`--reason`): kept with it, shown in ps, the timeline and its recording. */
  reason?: string;
}

/** Characters a run's reason may have at most. */
export const MAX_REASON_CHARS = 500;

/**
 * Why a run's reason is unusable, or null when it is fine: 1 to
 * {@link MAX_REASON_CHARS} characters, none of them a control character
 * (a reason is printed on terminals and pages, and must not drive them).
 */
export function reasonProblem(reason: string): string | null {
  if (reason.trim() === "") return "it is empty";
  if ([...reason].length > MAX_REASON_CHARS) {
    return `it is longer than ${MAX_REASON_CHARS} characters`;
  }
  // deno-lint-ignore no-control-regex
  if (/[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]/.test(reason)) {
    return "it has a control character (a newline, a tab, an escape, a text direction override...)";
  }
  return null;
}

/**
 * The request header that makes `POST /apps/:app/runs` safe to retry: one
 * fresh value per invocation (a UUID), 1-200 printable ASCII characters.
 * A repeat within 24 h on the same app by the same token with the same body
 * gets the first run back (200, header `Idempotent-Replayed: true`, an
 * attached run's secret again); with another body, 422 `idempotency_mismatch`.
 */
export const IDEMPOTENCY_HEADER = "Idempotency-Key";

/** Whether a value is usable as an `Idempotency-Key`. */
export function isIdempotencyKey(value: string): boolean {
  return /^[\x21-\x7e]{1,200}$/.test(value);
}

/** `POST /apps/:app/runs/:run/resize`. */
export interface ResizeBody {
  cols: number;
  rows: number;
}

/** `POST /tokens`. */
export interface CreateTokenBody {
  role?: Role;
  apps?: string[];
  name?: string;
}

/** `POST /agents/join-token`: limits of the new join token. */
export interface RotateJoinTokenBody {
  /** Enrolments it allows (default any number). */
  uses?: number;
  /** How long it enrols, in ms (default for ever). */
  ttl_ms?: number;
}

/** Names of environment variables. */
const ENV_KEY = /^[A-Za-z_][A-Za-z0-9_]{0,254}$/;
/** Names of uploaded files. */
const UPLOAD_NAME = /^[A-Za-z0-9._-][A-Za-z0-9._ -]{0,254}$/;
const SHA256 = /^[0-9a-f]{64}$/;
const TERM = /^[A-Za-z0-9._+-]{1,64}$/;

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

const appName: Decoder<string> = (value, field) => {
  const name = string(value, field);
  if (!NAME_PATTERN.test(name)) {
    throw new DecodeError(
      `Invalid app name "${name}": use 2-63 lowercase letters, digits and dashes, starting with a letter`,
      "invalid_name",
    );
  }
  return name;
};

const envSet: Decoder<Record<string, string>> = (value) => {
  if (!isObject(value)) {
    throw new DecodeError(`Field "set" must be an object of KEY: "value"`);
  }
  for (const [key, one] of Object.entries(value)) {
    if (!ENV_KEY.test(key)) throw new DecodeError(`Invalid variable name "${key}"`, "invalid_key");
    if (typeof one !== "string") throw new DecodeError(`Value of "${key}" must be a string`);
  }
  return { ...value } as Record<string, string>;
};

const envUnset: Decoder<string[]> = (value) => {
  if (!Array.isArray(value)) throw new DecodeError(`Field "unset" must be a list of keys`);
  for (const key of value) {
    if (typeof key !== "string" || !ENV_KEY.test(key)) {
      throw new DecodeError(`Invalid variable name "${String(key)}"`, "invalid_key");
    }
  }
  return [...value] as string[];
};

const runEnv: Decoder<Record<string, string>> = (value) => {
  if (!isObject(value)) throw new DecodeError(`Field "env" must be an object`);
  for (const [key, one] of Object.entries(value)) {
    if (!ENV_KEY.test(key) || typeof one !== "string") {
      throw new DecodeError(`Invalid variable "${key}": give KEY=VALUE`, "invalid_env");
    }
  }
  return { ...value } as Record<string, string>;
};

const runUpload: Decoder<RunUploadBody> = (value) => {
  const { name, sha256 } = isObject(value) ? value : {};
  if (typeof name !== "string" || !UPLOAD_NAME.test(name) || name === "." || name === "..") {
    throw new DecodeError(`Invalid upload name "${String(name)}"`, "invalid_upload");
  }
  if (typeof sha256 !== "string" || !SHA256.test(sha256)) {
    throw new DecodeError(`Upload "${name}" was not uploaded first`, "invalid_upload");
  }
  return { name, sha256 };
};

const dimension = check(integer, (n) => (n > 0 && n < 10000) || "must be between 1 and 9999");

const createAppBody: Decoder<CreateAppBody> = object({ name: appName });

const envChange = object({}, { set: envSet, unset: envUnset });

const envChangeBody: Decoder<EnvChangeBody> = (value, field) => {
  const body = envChange(value, field);
  if (Object.keys(body.set ?? {}).length === 0 && (body.unset ?? []).length === 0) {
    throw new DecodeError("Nothing to change: give KEY=VALUE pairs or keys to unset");
  }
  return body;
};

const runRequestBody: Decoder<RunRequestBody> = object({}, {
  command: refusing(string, {
    code: "invalid_command",
    message: () => "Give a command to run (or a process type with -t)",
  }),
  type: string,
  attached: boolean,
  tty: boolean,
  cols: lenient(dimension),
  rows: lenient(dimension),
  size: refusing(oneOf(SIZE_NAMES), {
    code: "unknown_size",
    message: (size) => `Unknown size "${String(size)}": use one of ${SIZE_NAMES.join(", ")}`,
  }),
  env: runEnv,
  uploads: array(runUpload),
  timeout: refusing(check(integer, (n) => n > 0 || "must be positive"), {
    code: "invalid",
    message: () => `Field "timeout" must be a positive number of seconds`,
  }),
  term: lenient(check(string, (term) => TERM.test(term) || "is not a terminal type")),
  fail_fast: boolean,
  reason: (value, field) => {
    const reason = string(value, field);
    const problem = reasonProblem(reason);
    if (problem !== null) {
      throw new DecodeError(`Cannot use this reason: ${problem}`, "invalid_reason");
    }
    return reason;
  },
});

const resizeBody: Decoder<ResizeBody> = refusing(object({ cols: dimension, rows: dimension }), {
  code: "invalid",
  message: () => "Give cols and rows as positive integers",
});

const createTokenBody: Decoder<CreateTokenBody> = object({}, {
  role: refusing(oneOf(["member", "admin"]), {
    code: "invalid_role",
    message: (role) => `Unknown role "${String(role)}": use member or admin`,
  }),
  apps: array(string),
  name: string,
});

const durationMs = check(integer, (n) => n >= 1000 || "must be at least 1000 (1s)");

const hostPort = check(integer, (n) => (n >= 1 && n <= 65535) || "must be a TCP port, 1-65535");

const appSettings = object({}, {
  idle_timeout_ms: durationMs,
  reattach_grace_ms: durationMs,
  network: refusing(oneOf(NETWORK_MODES), {
    code: "invalid_network",
    message: (mode) => `Unknown network "${String(mode)}": use one of ${NETWORK_MODES.join(", ")}`,
  }),
  host_ports: check(array(hostPort), (ports) => ports.length <= 64 || "may list at most 64 ports"),
  labels: labelsDecoder,
  require_reason: boolean,
});

const appSettingsBody: Decoder<AppSettingsBody> = (value, field) => {
  const body: AppSettingsBody = appSettings(value, field);
  // object() leaves a null out; here null means "back to the default".
  for (const key of ["idle_timeout_ms", "reattach_grace_ms"] as const) {
    if ((value as Record<string, unknown>)[key] === null) body[key] = null;
  }
  if (Object.values(body).every((v) => v === undefined)) {
    throw new DecodeError(
      "Nothing to change: give idle_timeout_ms, reattach_grace_ms, network, host_ports, labels " +
        "or require_reason",
    );
  }
  return body;
};

/** Checks a `PATCH /apps/:app` body. */
export function decodeAppSettingsBody(body: unknown): Decoding<AppSettingsBody> {
  return decodeValue(appSettingsBody, body);
}

/** Checks a `POST /apps` body. */
export function decodeCreateAppBody(body: unknown): Decoding<CreateAppBody> {
  return decodeValue(createAppBody, body);
}

/** Checks a `PATCH /apps/:app/env` body. */
export function decodeEnvChangeBody(body: unknown): Decoding<EnvChangeBody> {
  return decodeValue(envChangeBody, body);
}

/** Checks a `POST /apps/:app/runs` body. */
export function decodeRunRequestBody(body: unknown): Decoding<RunRequestBody> {
  return decodeValue(runRequestBody, body);
}

/** Checks a `POST /apps/:app/runs/:run/resize` body. */
export function decodeResizeBody(body: unknown): Decoding<ResizeBody> {
  return decodeValue(resizeBody, body);
}

const rotateJoinTokenBody: Decoder<RotateJoinTokenBody> = object({}, {
  uses: integer,
  ttl_ms: integer,
});

/** Checks a `POST /agents/join-token` body. */
export function decodeRotateJoinTokenBody(body: unknown): Decoding<RotateJoinTokenBody> {
  return decodeValue(rotateJoinTokenBody, body);
}

/** Checks a `POST /tokens` body. */
export function decodeCreateTokenBody(body: unknown): Decoding<CreateTokenBody> {
  return decodeValue(createTokenBody, body);
}
