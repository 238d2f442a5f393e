/**
 * The contract between the roles: everything that crosses the wire. Both the
 * server and the agent (and the CLI) import this module; they never import
 * each other. One file per topic:
 *
 * - `run.ts`: run states, sizes, labels (`one-off-N`), sandbox kinds;
 * - `attach.ts`: the port 5000 handshake, its refusals, `--attach-info`;
 * - `attach_frames.ts`: the framed attach protocol (frames, handshake lines);
 * - `channel.ts`: agent <-> server messages;
 * - `relay.ts`: port 5000's stream over WebSockets through the server;
 * - `api.ts`, `api_requests.ts`: the HTTP API's replies, and its request
 *   bodies with their decoders;
 * - `audit_find.ts`: listing and searching recorded sessions;
 * - `watch.ts`: watching a running session live;
 * - `timeline.ts`: timeline events and how they read;
 * - `slug_policy.ts`: what a valid slug entry is;
 * - `artifacts.ts`: the files a run leaves in `/tmp/downloads`.
 *
 * JSON casing: what the HTTP API and the CLI's `--json` show is snake_case
 * (`exit_code`, `created_at`), as users read and script it; messages on the
 * agent channel are camelCase (`runId`, `expiresAt`), being internal
 * TypeScript objects sent as they are.
 * @module
 */

export * from "./run.ts";
export * from "./attach.ts";
export * from "./attach_frames.ts";
export * from "./channel.ts";
export * from "./relay.ts";
export * from "./api.ts";
export * from "./api_requests.ts";
export * from "./timeline.ts";
export * from "./slug_policy.ts";
export * from "./labels.ts";
export type { Decoding } from "./_decode.ts";
export * from "./audit_find.ts";
export * from "./artifacts.ts";
export * from "./watch.ts";
