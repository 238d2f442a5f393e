/**
 * The CLI's view of the server: where it is, the token, and JSON requests.
 * @module
 */
import { IDEMPOTENCY_HEADER } from "../protocol/api_requests.ts";
import { VERSION } from "../protocol/channel.ts";
import { CliError, err } from "./_io.ts";
import {
  DEFAULT_RETRY_MS,
  isTransientNetworkError,
  isTransientStatus,
  networkReason,
  retrying,
  TransientError,
} from "./_retry.ts";

/** Sent on every request, so a server's logs tell clients apart. */
export const USER_AGENT = `oneoff/${VERSION} (deno ${Deno.version.deno}; ${Deno.build.os})`;

/** Where `oneoff login` keeps the server and token. */
export function configPath(): string {
  const base = Deno.env.get("XDG_CONFIG_HOME") ?? `${Deno.env.get("HOME") ?? "."}/.config`;
  return `${base}/oneoff/config.json`;
}

/** The stored login, if any. */
export async function readConfig(): Promise<{ server?: string; token?: string }> {
  try {
    const parsed = JSON.parse(await Deno.readTextFile(configPath()));
    return typeof parsed === "object" && parsed ? parsed : {};
  } catch {
    return {};
  }
}

/** Stores the login with mode 0600. */
export async function writeConfig(config: { server: string; token: string }): Promise<void> {
  const path = configPath();
  await Deno.mkdir(path.replace(/\/[^/]+$/, ""), { recursive: true, mode: 0o700 });
  await Deno.writeTextFile(path, JSON.stringify(config, null, 2) + "\n", { mode: 0o600 });
  await Deno.chmod(path, 0o600);
}

/** A JSON client for the server's API. */
export class Client {
  readonly server: string;
  readonly #token: string;

  constructor(server: string, token: string) {
    this.server = server.replace(/\/+$/, "");
    this.#token = token;
  }

  /** From ONEOFF_SERVER/ONEOFF_TOKEN or the stored login. */
  static async load(): Promise<Client> {
    const stored = await readConfig();
    const server = Deno.env.get("ONEOFF_SERVER") || stored.server;
    const token = Deno.env.get("ONEOFF_TOKEN") || stored.token;
    if (!server || !token) {
      throw new CliError(
        "Not logged in: run `oneoff login --server URL --token T` (or set ONEOFF_SERVER and ONEOFF_TOKEN)",
      );
    }
    return new Client(server, token);
  }

  /** The API token, for a request made outside this client (the relay's WebSocket). */
  bearer(): string {
    return this.#token;
  }

  /** Say nothing of retries on stderr (`--silent`). */
  quiet = false;

  /**
   * Sends a request; an API error becomes a CliError with its message. A GET,
   * and a POST with an `idempotencyKey`, is retried on a transient failure
   * (see `_retry.ts`) for `retryFor` ms (default 30 s); anything else is sent once.
   */
  async request<T>(
    method: string,
    path: string,
    body?: unknown,
    init: RequestOptions = {},
  ): Promise<T> {
    const { retryFor, idempotencyKey, timeoutMs, ...rest } = init;
    const safe = method === "GET" || idempotencyKey !== undefined;
    const send = () => this.#send<T>(method, path, body, rest, idempotencyKey, timeoutMs);
    if (!safe) {
      try {
        return await send();
      } catch (e) {
        if (e instanceof TransientError) throw this.#unreachable(e);
        throw e;
      }
    }
    try {
      return await retrying(send, { forMs: retryFor ?? DEFAULT_RETRY_MS, quiet: this.quiet });
    } catch (e) {
      if (e instanceof TransientError) throw this.#unreachable(e);
      throw e;
    }
  }

  /**
   * A GET whose answer is read as it comes (a long download): the response
   * when it is a success, else its API error as a CliError. Not retried.
   */
  async stream(path: string): Promise<Response> {
    const headers = { authorization: `Bearer ${this.#token}`, "user-agent": USER_AGENT };
    let res: Response;
    try {
      res = await fetch(`${this.server}/api${path}`, { headers });
    } catch (e) {
      const untrusted = certificateProblem(e);
      if (untrusted !== null) {
        throw new CliError(`Cannot reach the server at ${this.server}: ${untrusted}`);
      }
      throw this.#unreachable(new TransientError(networkReason(e)));
    }
    if (res.ok) return res;
    const text = await res.text();
    let message = `HTTP ${res.status}`;
    try {
      message = (JSON.parse(text) as { error?: { message?: string } }).error?.message ?? message;
    } catch {
      // Not an API error: the status says it.
    }
    throw new CliError(message);
  }

  #unreachable(e: TransientError): CliError {
    return new CliError(`Cannot reach the server at ${this.server}: ${e.reason}`, 1, { cause: e });
  }

  /** One try; a failure worth retrying is a TransientError. */
  async #send<T>(
    method: string,
    path: string,
    body: unknown,
    init: RequestInit,
    idempotencyKey: string | undefined,
    timeoutMs: number | undefined,
  ): Promise<T> {
    const headers = new Headers(init.headers);
    headers.set("authorization", `Bearer ${this.#token}`);
    headers.set("user-agent", USER_AGENT);
    if (idempotencyKey !== undefined) headers.set(IDEMPOTENCY_HEADER, idempotencyKey);
    let payload: BodyInit | null | undefined = init.body;
    if (body !== undefined) {
      headers.set("content-type", "application/json");
      payload = JSON.stringify(body);
    }
    const url = `${this.server}/api${path}`;
    // ONEOFF_DEBUG=1: each request on stderr; the token stays out of it.
    const debug = Deno.env.get("ONEOFF_DEBUG") === "1";
    const started = performance.now();
    const signal = timeoutMs === undefined ? init.signal : AbortSignal.timeout(timeoutMs);
    let res: Response;
    let text: string;
    try {
      res = await fetch(url, {
        ...init,
        method,
        headers,
        body: payload ?? null,
        signal: signal ?? null,
      });
      // The connection may drop in the middle of the answer, too.
      text = await res.text();
    } catch (e) {
      if (debug) err(`oneoff debug: ${method} ${url} failed (${elapsed(started)})\n`);
      const untrusted = certificateProblem(e);
      if (untrusted !== null) {
        throw new CliError(`Cannot reach the server at ${this.server}: ${untrusted}`);
      }
      if (!isTransientNetworkError(e)) {
        throw this.#unreachable(new TransientError(networkReason(e)));
      }
      throw new TransientError(networkReason(e), { cause: e });
    }
    if (debug) err(`oneoff debug: ${method} ${url} ${res.status} (${elapsed(started)})\n`);
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch {
      if (isTransientStatus(res.status)) throw new TransientError(`HTTP ${res.status}`);
      throw new CliError(`Unexpected answer from ${this.server} (HTTP ${res.status})`);
    }
    if (!res.ok) {
      const error = (json as { error?: { code?: string; message?: string } }).error;
      const message = error?.message ?? `HTTP ${res.status}`;
      if (isTransientStatus(res.status)) throw new TransientError(`HTTP ${res.status}: ${message}`);
      // A retry that overtook the try it repeats: that one's answer comes soon.
      if (idempotencyKey !== undefined && error?.code === IN_PROGRESS) {
        throw new TransientError("the first try is still being handled");
      }
      throw new CliError(message);
    }
    return json as T;
  }
}

/** The server's answer to a keyed request while the first with that key is handled. */
const IN_PROGRESS = "idempotency_in_progress";

/** What a request may add to fetch's options. */
export interface RequestOptions extends RequestInit {
  /** How long to keep retrying a GET or a keyed POST (default 30 s). */
  retryFor?: number;
  /** Makes a POST safe to retry: the same key on every try of one invocation. */
  idempotencyKey?: string;
  /** Abort one try after this long, as a transient failure. */
  timeoutMs?: number;
}

function elapsed(since: number): string {
  return `${Math.round(performance.now() - since)} ms`;
}

/** Why fetch failed; for a certificate no CA vouches for, what to do. */
function certificateProblem(e: unknown): string | null {
  const cause = e instanceof Error && e.cause instanceof Error ? e.cause.message : "";
  if (!/certificate/i.test(cause)) return null;
  return `the server's TLS certificate is not trusted (${
    cause.replace(/^.*invalid peer certificate: /, "")
  }): for a private CA, set DENO_CERT=/path/to/ca.pem`;
}
