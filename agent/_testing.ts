/**
 * Fakes for the runner's tests: a sandbox whose processes the test drives
 * (writes their output, decides how they take signals), a slug cache, an
 * attach listener and a client connection.
 * @module
 */
import type { AttachedClient } from "./attach_listener.ts";
import type { AttachWaiter } from "./run.ts";
import type { ExitStatus, Sandbox, SandboxProcess, SandboxSpec } from "./sandbox/mod.ts";
import type { SlugLease } from "./slug_cache.ts";

const SIGNALS: Partial<Record<Deno.Signal, number>> = { SIGHUP: 1, SIGKILL: 9, SIGTERM: 15 };

/** A started fake process: output written by the test, exit when a signal it obeys arrives. */
export class FakeProcess implements SandboxProcess {
  readonly pid = 4242;
  readonly spec: SandboxSpec;
  readonly stdin: WritableStream<Uint8Array>;
  readonly stdout: ReadableStream<Uint8Array>;
  readonly stderr: ReadableStream<Uint8Array> | null;
  readonly status: Promise<ExitStatus>;
  /** Every signal sent, in order. */
  readonly signals: Deno.Signal[] = [];
  /** What reached stdin. */
  readonly input: string[] = [];
  /** Signals the process survives (SIGKILL always kills). */
  ignore = new Set<Deno.Signal>();
  #out: ReadableStreamDefaultController<Uint8Array> | undefined;
  #err: ReadableStreamDefaultController<Uint8Array> | undefined;
  #resolve: (status: ExitStatus) => void = () => {};
  #exited = false;

  constructor(spec: SandboxSpec) {
    this.spec = spec;
    this.stdout = new ReadableStream({ start: (c) => void (this.#out = c) });
    this.stderr = spec.tty ? null : new ReadableStream({ start: (c) => void (this.#err = c) });
    const decoder = new TextDecoder();
    this.stdin = new WritableStream({
      write: (chunk) => void this.input.push(decoder.decode(chunk)),
    });
    this.status = new Promise((resolve) => this.#resolve = resolve);
  }

  /** Writes to stdout (or stderr). */
  write(text: string, stream: "stdout" | "stderr" = "stdout"): void {
    (stream === "stdout" ? this.#out : this.#err)?.enqueue(new TextEncoder().encode(text));
  }

  /** Ends the process with `code`: its output closes, then its status resolves. */
  exit(code: number): void {
    if (this.#exited) return;
    this.#exited = true;
    this.#out?.close();
    this.#err?.close();
    const signal = Object.entries(SIGNALS).find(([, n]) => 128 + n === code)?.[0] ?? null;
    this.#resolve({ code, signal, oomKilled: false });
  }

  resize(): void {}

  kill(signal: Deno.Signal): void {
    this.signals.push(signal);
    if (signal === "SIGKILL" || !this.ignore.has(signal)) this.exit(128 + (SIGNALS[signal] ?? 0));
  }
}

/** A sandbox that starts {@link FakeProcess}es. */
export class FakeSandbox implements Sandbox {
  readonly name = "bwrap";
  readonly warnings: string[] = [];
  /** Every process started, in order. */
  readonly processes: FakeProcess[] = [];
  /** Applied to each process as it starts. */
  ignore: Deno.Signal[] = [];

  spawn(spec: SandboxSpec): Promise<SandboxProcess> {
    const process = new FakeProcess(spec);
    for (const signal of this.ignore) process.ignore.add(signal);
    this.processes.push(process);
    return Promise.resolve(process);
  }
}

/** A slug cache that hands out one fake directory and counts releases. */
export class FakeSlugs {
  released = 0;

  acquire(_sha256: string): Promise<SlugLease> {
    return Promise.resolve({ dir: "/nonexistent/slug", release: () => void this.released++ });
  }
}

/** An attach listener the test attaches to by hand. */
export class FakeListener implements AttachWaiter {
  readonly waiting = new Map<string, (client: AttachedClient) => void>();
  readonly cancelled: string[] = [];

  expect(secretSha256: string, _expiresAt: number, onAttach: (c: AttachedClient) => void): void {
    this.waiting.set(secretSha256, onAttach);
  }

  cancel(secretSha256: string): void {
    this.waiting.delete(secretSha256);
    this.cancelled.push(secretSha256);
  }

  /** A client presents the secret of this hash. */
  attach(secretSha256: string, client: AttachedClient): void {
    const onAttach = this.waiting.get(secretSha256);
    if (!onAttach) throw new Error(`No run waits for secret "${secretSha256}"`);
    this.waiting.delete(secretSha256);
    onAttach(client);
  }
}

/** A client connection that stays open and silent until closed; `written` holds what it got. */
export function fakeClient(): AttachedClient & { written: string[]; closed: () => boolean } {
  const written: string[] = [];
  let closed = false;
  let hangUp: (n: null) => void = () => {};
  const decoder = new TextDecoder();
  const conn = {
    read: () => closed ? Promise.resolve(null) : new Promise<null>((r) => hangUp = r),
    write: (bytes: Uint8Array) => {
      written.push(decoder.decode(bytes));
      return Promise.resolve(bytes.length);
    },
    close: () => {
      closed = true;
      hangUp(null);
    },
  };
  return {
    // The session uses only read, write and close of its connection.
    conn: conn as unknown as Deno.Conn,
    initial: new Uint8Array(),
    remoteAddr: "127.0.0.1:40000",
    written,
    closed: () => closed,
  };
}
