/**
 * How the CLI reaches a run's attach stream: straight to the agent's port
 * 5000 (`direct`), through the server's HTTP(S) port as a WebSocket relay
 * (`server`: works wherever the API does, through HTTPS_PROXY and reverse
 * proxies, to agents behind NAT), or `auto`: direct when the port answers
 * quickly, else the relay, said once on stderr. Either way the result is the
 * same byte stream, the secret line first.
 * @module
 */
import { type AttachTarget, dialRelay, RelayConn } from "../protocol/mod.ts";
import { CliError, err } from "./_io.ts";
import type { ByteConn } from "./_tls.ts";
import { USER_AGENT } from "./client.ts";

/** The ways to the attach stream. */
export const VIAS = ["direct", "server", "auto"] as const;
/** One way to the attach stream. */
export type Via = typeof VIAS[number];

/** How long `auto` waits for the agent's port before taking the relay. */
export const DIRECT_TIMEOUT_MS = 1_500;

/** Where the relay is and how to choose. */
export interface TransportOptions {
  /** Default: $ONEOFF_VIA, else `auto`. */
  via?: Via;
  /** The server's base URL, as the API client uses it. */
  server: string;
  /** The API token, presented to the relay as bearer. */
  token: string;
  /** Say nothing of a fallback on stderr. */
  silent?: boolean;
  /** `auto`'s patience with the agent's port (default DIRECT_TIMEOUT_MS). */
  directTimeoutMs?: number;
  /** Told when `auto` gave up on the agent's port and took the relay. */
  onFallback?: () => void;
}

/**
 * The connection maker of one session, called again for each reconnect:
 * `auto` decides on the first connection and keeps that path, so that a
 * reconnect through the relay does not wait for the unreachable port again.
 */
export function attachOpener(
  options: TransportOptions,
): (info: AttachTarget) => Promise<ByteConn> {
  let via: Via = options.via ?? chooseVia(undefined);
  return async (info) => {
    if (via !== "auto") return await openAttachConn(info, { ...options, via });
    const conn = await openAttachConn(info, { ...options, onFallback: () => via = "server" });
    if (via === "auto") via = "direct";
    return conn;
  };
}

/** The `--via` given or $ONEOFF_VIA, checked; `auto` when neither. */
export function chooseVia(given: string | undefined): Via {
  const value = given ?? Deno.env.get("ONEOFF_VIA") ?? "auto";
  if ((VIAS as readonly string[]).includes(value)) return value as Via;
  const from = given === undefined ? "ONEOFF_VIA" : "--via";
  throw new CliError(`Invalid ${from} "${value}": use direct, server or auto`, 2);
}

/** Opens the attach stream of `info` the way `options.via` says (see the module doc). */
export async function openAttachConn(
  info: AttachTarget,
  options: TransportOptions,
): Promise<ByteConn> {
  const via = options.via ?? chooseVia(undefined);
  if (via === "direct") return await connectDirect(info);
  if (via === "server") return await connectRelay(info, options);
  const timeoutMs = options.directTimeoutMs ?? DIRECT_TIMEOUT_MS;
  try {
    return await connectDirect(info, timeoutMs);
  } catch (e) {
    // Only an unreachable port falls back: a certificate that is not the
    // pinned one is a warning about the agent, not about the network.
    if (!(e instanceof Error) || !e.message.startsWith("Cannot connect to ")) throw e;
    if (!options.silent) {
      const why = e instanceof Error ? e.message.replace(/^Cannot connect to [^:]+:\d+: /, "") : e;
      err(
        `oneoff: cannot reach the agent at ${info.host}:${info.port} (${why}); attaching through the server\n`,
      );
    }
    options.onFallback?.();
    return await connectRelay(info, options);
  }
}

/** Port 5000 itself (TLS pinned to the agent's fingerprint when the agent speaks TLS). */
export async function connectDirect(info: AttachTarget, timeoutMs?: number): Promise<ByteConn> {
  const where = `${info.host}:${info.port}`;
  const attempt: Promise<ByteConn> = (async () => {
    if (info.tls) {
      if (!info.tls_fingerprint) {
        throw new CliError(
          "The server knows no certificate for this agent: refusing an unpinned TLS connection",
        );
      }
      const { connectPinned } = await import("./_tls.ts");
      return await connectPinned(info.host, info.port, info.tls_fingerprint);
    }
    try {
      return await Deno.connect({ hostname: info.host, port: info.port });
    } catch (e) {
      // The cause kept: a refused port tells a reconnect the agent is gone.
      throw new CliError(`Cannot connect to ${where}: ${e instanceof Error ? e.message : e}`, 1, {
        cause: e,
      });
    }
  })();
  if (timeoutMs === undefined) return await attempt;
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new CliError(`Cannot connect to ${where}: no answer within ${timeoutMs} ms`)),
      timeoutMs,
    );
  });
  try {
    return await Promise.race([attempt, late]);
  } catch (e) {
    // A connection that comes after the deadline is nobody's: closed.
    attempt.then((conn) => conn.close(), () => {});
    throw e;
  } finally {
    clearTimeout(timer);
  }
}

/** The relay URL of a run: the API's, as a WebSocket. */
export function relayUrl(server: string, info: AttachTarget): string {
  const base = server.replace(/\/+$/, "").replace(/^http/, "ws");
  return `${base}/api/apps/${encodeURIComponent(info.app)}/runs/${
    encodeURIComponent(info.run)
  }/relay`;
}

/** The relay through the server; an API error before the upgrade is said as the API says it. */
export async function connectRelay(
  info: AttachTarget,
  options: Pick<TransportOptions, "server" | "token">,
): Promise<ByteConn> {
  const url = relayUrl(options.server, info);
  const headers = { authorization: `Bearer ${options.token}`, "user-agent": USER_AGENT };
  try {
    return new RelayConn(await dialRelay(url, { headers }));
  } catch (e) {
    const why = e instanceof Error ? e.message : String(e);
    throw new CliError(
      `Cannot attach to ${info.run} through the server: ${await refusal(url, headers) ?? why}`,
    );
  }
}

/** A WebSocket handshake shows no body: the same request, not upgraded, says why it was refused. */
async function refusal(url: string, headers: Record<string, string>): Promise<string | null> {
  try {
    const res = await fetch(url.replace(/^ws/, "http"), {
      headers,
      signal: AbortSignal.timeout(5_000),
    });
    const body = await res.json() as { error?: { code?: string; message?: string } };
    if (res.status === 426 || !body.error?.message) return null;
    return body.error.message;
  } catch {
    return null;
  }
}
