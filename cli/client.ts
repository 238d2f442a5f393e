/**
 * The CLI's view of the server: where it is, the token, and JSON requests.
 * @module
 */
import { VERSION } from "../protocol/channel.ts";
import { CliError, err } from "./_io.ts";

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

  /** Sends a request; an API error becomes a CliError with its message. */
  async request<T>(
    method: string,
    path: string,
    body?: unknown,
    init: RequestInit = {},
  ): Promise<T> {
    const headers = new Headers(init.headers);
    headers.set("authorization", `Bearer ${this.#token}`);
    headers.set("user-agent", USER_AGENT);
    let payload: BodyInit | null | undefined = init.body;
    if (body !== undefined) {
      headers.set("content-type", "application/json");
      payload = JSON.stringify(body);
    }
    const url = `${this.server}/api${path}`;
    // ONEOFF_DEBUG=1: each request on stderr; the token stays out of it.
    const debug = Deno.env.get("ONEOFF_DEBUG") === "1";
    const started = performance.now();
    let res: Response;
    try {
      res = await fetch(url, { ...init, method, headers, body: payload ?? null });
    } catch (e) {
      if (debug) err(`oneoff debug: ${method} ${url} failed (${elapsed(started)})\n`);
      throw new CliError(`Cannot reach the server at ${this.server}: ${reachError(e)}`);
    }
    if (debug) err(`oneoff debug: ${method} ${url} ${res.status} (${elapsed(started)})\n`);
    const text = await res.text();
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch {
      throw new CliError(`Unexpected answer from ${this.server} (HTTP ${res.status})`);
    }
    if (!res.ok) {
      const message = (json as { error?: { message?: string } }).error?.message ??
        `HTTP ${res.status}`;
      throw new CliError(message);
    }
    return json as T;
  }
}

function elapsed(since: number): string {
  return `${Math.round(performance.now() - since)} ms`;
}

/** Why fetch failed; for a certificate no CA vouches for, what to do. */
function reachError(e: unknown): string {
  const cause = e instanceof Error && e.cause instanceof Error ? e.cause.message : "";
  if (/certificate/i.test(cause)) {
    return `the server's TLS certificate is not trusted (${
      cause.replace(/^.*invalid peer certificate: /, "")
    }): for a private CA, set DENO_CERT=/path/to/ca.pem`;
  }
  return e instanceof Error ? e.message : String(e);
}
