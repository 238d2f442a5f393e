/**
 * A run's framed session wired to the run and the agent around it: resume
 * secrets on the attach listener, reattaches reported to the server (the
 * timeline) and marked in the recording, and the run's ends (hang-up, grace
 * over, idle) turned into stops.
 * @module
 */
import { createHash, randomBytes } from "node:crypto";
import { ATTACH_REFUSALS, type FramedExit, type RunSpec } from "../protocol/mod.ts";
import { duration } from "../util/format.ts";
import type { AttachedClient } from "./attach_listener.ts";
import { FramedSession } from "./_framed_session.ts";
import type { Ending, RunHost } from "./run.ts";
import type { Recorder } from "./recorder.ts";
import type { ExitStatus, SandboxProcess } from "./sandbox/mod.ts";

/** What the framed session needs from its run. */
export interface FramedRunOptions {
  spec: RunSpec;
  graceMs: number;
  host: RunHost;
  recorder?: Recorder;
  stop(state: Ending, reason: string, signal: Deno.Signal): void;
  resize(cols: number, rows: number): void;
}

/** A run's framed session; see the module documentation. */
export interface FramedRun {
  /** The first client (the `oneoff-framed/1` line). */
  attach(client: AttachedClient): void;
  /** Copies output until the process has exited; its status. */
  run(): Promise<ExitStatus>;
  /** Sends the end in band and waits (bounded by the grace) until the client has it. */
  end(exit: FramedExit): Promise<void>;
  /** Tells the connected client one line. */
  notice(text: string): void;
  /** Accepts a one-use resume secret the server handed to another terminal. */
  expect(secretSha256: string, expiresAt: number): void;
  /** Ends the session now. */
  close(): void;
}

const encoder = new TextEncoder();
// How long after the run's end a client still away may come back for the exit code.
const END_MARGIN_MS = 10_000;

/** Starts the framed session of `process`. */
export function startFramed(process: SandboxProcess, options: FramedRunOptions): FramedRun {
  const { spec, host, graceMs, recorder } = options;
  const { listener, clock } = host;
  const secrets = new Set<string>();
  let current: string | undefined;
  let session: FramedSession | undefined = undefined;

  // A secret still unused when the next HELLO goes out belongs to a terminal taken over.
  const withdraw = (hash: string, reason: string = ATTACH_REFUSALS.takenOver) => {
    if (secrets.delete(hash)) listener.cancel(hash, reason);
  };
  const resumer = (client: AttachedClient) => {
    // A resume secret is for a resume line: a raw or framed line with it is refused.
    if (client.handshake?.mode !== "resume") throw new Error("Not a resume line");
    session!.attach(client, client.handshake.outOffset);
  };
  const expect = (hash: string, expiresAt: number) => {
    secrets.add(hash);
    listener.expect(hash, expiresAt, (client) => {
      secrets.delete(hash);
      resumer(client);
    }, "resume");
  };

  session = new FramedSession(process, {
    tty: spec.tty,
    idleTimeoutMs: spec.idleTimeoutMs,
    graceMs,
    clock,
    onIdle: () => options.stop("timed_out", "Idle: no input or output for too long", "SIGTERM"),
    // As when a terminal closes: SIGHUP, then SIGKILL after the grace period.
    onHangup: () => options.stop("stopped", "The client disconnected", "SIGHUP"),
    onGraceOver: () =>
      options.stop(
        "stopped",
        `The client disconnected and did not come back within ${duration(graceMs)}`,
        "SIGHUP",
      ),
    onResize: options.resize,
    onReattach: (address) => {
      const at = clock.now();
      host.report({ type: "session_event", runId: spec.runId, kind: "reattached", at, address });
      // The recorder keeps i/o/r events only: the marker is a line of output, as the
      // audit quota's is, so that a replay shows where the client came back.
      recorder?.output(encoder.encode(`\r\n[oneoff: client reattached from ${address}]\r\n`));
      host.log.info("session reattached", { run: spec.label, address });
    },
    issueSecret: () => {
      if (current) withdraw(current);
      const secret = randomBytes(32).toString("base64url");
      current = createHash("sha256").update(secret).digest("hex");
      expect(current, clock.now() + spec.timeoutMs + graceMs + END_MARGIN_MS);
      return secret;
    },
    ...(recorder
      ? {
        observe: (direction: "in" | "out", bytes: Uint8Array) =>
          direction === "in" ? recorder.input(bytes) : recorder.output(bytes),
      }
      : {}),
  });

  const close = () => {
    session.close();
    for (const hash of [...secrets]) withdraw(hash, ATTACH_REFUSALS.expired);
  };
  return {
    attach: (client) => session.attach(client, 0),
    run: () => session.run(),
    end: async (exit) => {
      await session.end(exit, graceMs + END_MARGIN_MS);
      close();
    },
    notice: (text) => session.notice(text),
    expect,
    close,
  };
}
