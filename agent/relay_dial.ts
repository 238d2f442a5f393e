/**
 * The agent's end of the relay through the server: asked on the control
 * channel (`open_relay`), it dials back one WebSocket for that session, to
 * the same server URL as the channel (so through the same TLS, CA and
 * reverse proxy), and hands it to the attach listener as if it had come to
 * port 5000 from the CLI's address.
 * @module
 */
import { AGENT_RELAY_PATH, dialRelay, RelayConn, VERSION } from "../protocol/mod.ts";
import { errorMessage, type Logger } from "../util/log.ts";
import type { AttachListener } from "./attach_listener.ts";

/** What a dial-back needs. */
export interface RelayDialOptions {
  /** The server's base URL (http or https), as the control channel uses it. */
  server: string;
  /** The agent's credential, presented as bearer. */
  credential(): string | undefined;
  listener: AttachListener;
  log: Logger;
}

/** Dials the relay `relayId` back and gives it to the listener; failures are logged. */
export async function dialRelayBack(
  msg: { relayId: string; runId: string; clientAddress: string },
  options: RelayDialOptions,
): Promise<void> {
  const url = options.server.replace(/^http/, "ws").replace(/\/+$/, "") +
    `${AGENT_RELAY_PATH}/${encodeURIComponent(msg.relayId)}`;
  try {
    const ws = await dialRelay(url, {
      headers: {
        authorization: `Bearer ${options.credential() ?? ""}`,
        "user-agent": `oneoff-agent/${VERSION} (deno ${Deno.version.deno}; ${Deno.build.os})`,
      },
    });
    options.listener.acceptRelayed(new RelayConn(ws), msg.clientAddress);
    options.log.info("relay opened", { run: msg.runId, address: msg.clientAddress });
  } catch (err) {
    options.log.warn("cannot open the relay the server asked for", {
      run: msg.runId,
      error: errorMessage(err),
    });
  }
}
