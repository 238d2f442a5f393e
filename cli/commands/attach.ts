/**
 * `oneoff attach`: reattach to a running attached one-off from another
 * terminal (its own `oneoff run` reattaches by itself after a drop). Only
 * the one who started it, or an admin, may; the other terminal is told.
 * @module
 */
import { ATTACH_REFUSALS, type ReattachReply, type RunReply } from "../../protocol/mod.ts";
import { parse } from "../_args.ts";
import { appName, CliError, err, UsageError } from "../_io.ts";
import { Client } from "../client.ts";
import { attachFramed } from "../attach.ts";
import { attachOpener, chooseVia, VIAS } from "../_transport.ts";
import { finalCode, lostOf, waitEnded } from "./run.ts";

// The agent learns of the new secret over its control channel, which may
// take a moment longer than the new connection: an unknown secret is tried again.
const UNKNOWN_TRIES = 5;
const UNKNOWN_WAIT_MS = 200;

/** `oneoff attach -a APP one-off-N`; resolves to the run's exit code. */
export async function attach(args: string[]): Promise<number> {
  const parsed = parse("attach", args);
  const app = appName(parsed.string("app"));
  const silent = parsed.flag("silent");
  const given = parsed.string("via");
  if (given !== undefined && !(VIAS as readonly string[]).includes(given)) {
    throw new UsageError(`Invalid --via "${given}": use direct, server or auto`);
  }
  const via = chooseVia(given);
  const [label, ...rest] = parsed.positionals;
  if (!label || rest.length > 0) {
    throw new UsageError("attach needs exactly one run, e.g. one-off-3");
  }
  const client = await Client.load();
  client.quiet = silent;
  const path = `/apps/${encodeURIComponent(app)}/runs/${encodeURIComponent(label)}`;
  const { run } = await client.request<RunReply>("GET", path);
  const open = attachOpener({ via, server: client.server, token: client.bearer(), silent });
  // Asked before attaching: the end when it does not come in band, and a reconnect's stop.
  const ended = waitEnded(client, path);
  ended.catch(() => {});
  for (let tries = 1;; tries++) {
    const granted = await client.request<ReattachReply>("POST", `${path}/attach`);
    if (!silent && tries === 1) {
      err(
        `Attaching to ${run.label} of "${app}" ${
          via === "server"
            ? "through the server"
            : `on ${granted.attach.host}:${granted.attach.port}`
        }...\n`,
      );
    }
    const outcome = await attachFramed(granted.attach, granted.secret, {
      tty: run.tty,
      silent,
      resume: true,
      open,
      lost: lostOf(ended),
    });
    if (outcome.refused === "unknown secret" && tries < UNKNOWN_TRIES) {
      await new Promise((resolve) => setTimeout(resolve, UNKNOWN_WAIT_MS));
      continue;
    }
    if (!outcome.joined) {
      // Never joined: there is no session here to wait for the end of.
      const why = outcome.refused === ATTACH_REFUSALS.unknown
        ? "its agent has no framed session for it (one attached with nc cannot be taken over)"
        : outcome.refused ?? "the agent closed the connection";
      throw new CliError(`Cannot attach to ${run.label}: ${why}`);
    }
    return await finalCode(client, path, run.label, outcome, { ended, silent });
  }
}
