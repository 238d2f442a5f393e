/**
 * The CLI in a real pseudo-terminal (node-pty), for the tests of
 * interactive sessions.
 * @module
 */
import pty from "node-pty";
import { waitFor } from "./_wait.ts";

/** The CLI in a real pseudo-terminal, as a developer's shell would run it. */
export class Terminal {
  #proc: ReturnType<typeof pty.spawn>;
  output = "";
  exit: Promise<number>;

  constructor(args: string[], env: Record<string, string>, size: { cols: number; rows: number }) {
    this.#proc = pty.spawn(Deno.execPath(), [
      "run",
      "-A",
      "--quiet",
      new URL("../main.ts", import.meta.url).pathname,
      ...args,
    ], {
      name: "xterm-256color",
      ...size,
      env: { ...env, TERM: "xterm-256color", PATH: Deno.env.get("PATH") ?? "/usr/bin:/bin" },
    });
    this.#proc.onData((d: string) => this.output += d);
    this.exit = new Promise((resolve) =>
      this.#proc.onExit(({ exitCode }: { exitCode: number }) => resolve(exitCode))
    );
  }

  /** Types `text` as the user would. */
  type(text: string): void {
    this.#proc.write(text);
  }

  /** Resizes the terminal, as a window would. */
  resize(cols: number, rows: number): void {
    this.#proc.resize(cols, rows);
  }

  /** Waits until the output (after `from`) matches; resolves with that output. */
  waitFor(pattern: RegExp, from = 0): Promise<string> {
    return waitFor(() => {
      const seen = this.output.slice(from);
      return pattern.test(seen) && seen;
    }, { message: `${pattern} in the terminal`, seen: () => this.output });
  }
}
