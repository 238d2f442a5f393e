/**
 * Fixtures for the sandbox tests: a work dir, a small slug and uploads in
 * unique temp dirs, a started sandbox, and helpers to drive a run.
 * @module
 */
import { type Limits, type SandboxKind } from "../../protocol/mod.ts";
import { createSandbox, SANDBOX_UID } from "./mod.ts";
import type { ExitStatus, Sandbox, SandboxProcess, SandboxSpec } from "./mod.ts";
import { waitFor } from "../../tests/_wait.ts";

const MiB = 1024 * 1024;

/** Small limits, so that tests hit them fast. */
export const TEST_LIMITS: Limits = {
  memoryBytes: 64 * MiB,
  pids: 64,
  cpuMillis: 500,
  tmpBytes: 4 * MiB,
  openFiles: 256,
};

/** A PATH for commands inside the sandbox. */
export const PATH = "/usr/local/bin:/usr/bin:/bin";

/** A sandbox of one kind over fresh temp dirs; dispose removes them. */
export class Fixture {
  readonly sandbox: Sandbox;
  readonly #top: string;
  readonly workDir: string;
  readonly slugDir: string;
  readonly uploadsDir: string;

  private constructor(sandbox: Sandbox, top: string, slugDir: string, uploadsDir: string) {
    this.sandbox = sandbox;
    this.#top = top;
    this.workDir = `${top}/work`;
    this.slugDir = slugDir;
    this.uploadsDir = uploadsDir;
  }

  /** Creates the temp dirs (0700, as a real data dir would be) and the sandbox. */
  static async create(kind: SandboxKind): Promise<Fixture> {
    const top = await Deno.makeTempDir({ prefix: `oneoff-sandbox-${kind}-` });
    const slugDir = `${top}/slug`;
    await Deno.mkdir(slugDir, { mode: 0o755 });
    await Deno.writeTextFile(`${slugDir}/hello.txt`, "hello\n", { mode: 0o644 });
    // A file the sandbox user owns, as a slug extracted for it would hold.
    await Deno.writeTextFile(`${slugDir}/owned.txt`, "mine\n", { mode: 0o644 });
    if (Deno.uid() === 0) await Deno.chown(`${slugDir}/owned.txt`, SANDBOX_UID, SANDBOX_UID);
    const uploadsDir = `${top}/uploads`;
    await Deno.mkdir(uploadsDir, { mode: 0o755 });
    await Deno.writeTextFile(`${uploadsDir}/data.csv`, "a,b\n1,2\n", { mode: 0o644 });
    const sandbox = await createSandbox(kind, { workDir: `${top}/work` });
    return new Fixture(sandbox, top, slugDir, uploadsDir);
  }

  /** A spec for `command` with test defaults; `overrides` win. */
  spec(command: string, overrides: Partial<SandboxSpec> = {}): SandboxSpec {
    return {
      runId: crypto.randomUUID(),
      slugDir: this.slugDir,
      command,
      env: { PATH, HOME: "/app" },
      limits: TEST_LIMITS,
      network: "isolated",
      ...overrides,
    };
  }

  /** Runs `command` to the end with stdin closed; returns its output and status. */
  async run(command: string, overrides: Partial<SandboxSpec> = {}): Promise<RunResult> {
    const process = await this.sandbox.spawn(this.spec(command, overrides));
    await process.stdin.close();
    return await collect(process);
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await Deno.remove(this.#top, { recursive: true });
  }
}

/** What a finished run printed, and how it ended. */
export interface RunResult {
  stdout: string;
  stderr: string;
  status: ExitStatus;
}

/** Reads a process's output to the end and waits for its status. */
export async function collect(process: SandboxProcess): Promise<RunResult> {
  const [stdout, stderr, status] = await Promise.all([
    new Response(process.stdout).text(),
    process.stderr ? new Response(process.stderr).text() : "",
    process.status,
  ]);
  return { stdout, stderr, status };
}

/** Reads a stream as text, and waits for text to appear in it. */
export class TextReader {
  #text = "";
  #ended = false;
  readonly done: Promise<void>;

  constructor(stream: ReadableStream<Uint8Array>) {
    this.done = (async () => {
      for await (const chunk of stream.pipeThrough(new TextDecoderStream())) this.#text += chunk;
      this.#ended = true;
    })();
  }

  /** Everything read so far. */
  get text(): string {
    return this.#text;
  }

  /** Resolves once `pattern` has been read; rejects if the stream ends or the (generous) deadline passes first. */
  async waitFor(pattern: RegExp | string): Promise<void> {
    const found = () =>
      typeof pattern === "string" ? this.#text.includes(pattern) : pattern.test(this.#text);
    await waitFor(() => {
      if (found()) return true;
      if (this.#ended) {
        throw new Error(`Stream ended without ${pattern}; read: ${JSON.stringify(this.#text)}`);
      }
      return false;
    }, { message: `${pattern} in the output`, seen: () => this.#text });
  }
}

/** Host pids whose argv is exactly `argv`. */
export async function pidsRunning(argv: string[]): Promise<number[]> {
  const wanted = argv.map((arg) => `${arg}\0`).join("");
  const pids: number[] = [];
  for await (const entry of Deno.readDir("/proc")) {
    if (!/^\d+$/.test(entry.name)) continue;
    const cmdline = await Deno.readTextFile(`/proc/${entry.name}/cmdline`).catch(() => "");
    if (cmdline === wanted) pids.push(Number(entry.name));
  }
  return pids;
}
