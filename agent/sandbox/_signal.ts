/**
 * Signals for sandboxes. A sandbox's processes live in their own pid
 * namespace below the process the agent spawned (bwrap, or runc); signalling
 * that one would only kill the tool (and, through die-with-parent, everything
 * with SIGKILL). So a signal goes to every descendant that sits in a deeper
 * pid namespace: the whole sandboxed tree, as `kill -SIG -1` inside would.
 * @module
 */

const SIGNALS: Partial<Record<Deno.Signal, number>> = {
  SIGHUP: 1,
  SIGINT: 2,
  SIGQUIT: 3,
  SIGILL: 4,
  SIGTRAP: 5,
  SIGABRT: 6,
  SIGBUS: 7,
  SIGFPE: 8,
  SIGKILL: 9,
  SIGUSR1: 10,
  SIGSEGV: 11,
  SIGUSR2: 12,
  SIGPIPE: 13,
  SIGALRM: 14,
  SIGTERM: 15,
  SIGCHLD: 17,
  SIGCONT: 18,
  SIGSTOP: 19,
  SIGTSTP: 20,
  SIGTTIN: 21,
  SIGTTOU: 22,
  SIGURG: 23,
  SIGXCPU: 24,
  SIGXFSZ: 25,
  SIGVTALRM: 26,
  SIGPROF: 27,
  SIGWINCH: 28,
  SIGIO: 29,
  SIGPWR: 30,
  SIGSYS: 31,
};

/**
 * The signal an exit code stands for (shells and both sandbox tools report
 * death by signal N as 128+N), or null. `exit 130` reads the same as SIGINT;
 * nothing past the tool can tell them apart.
 */
export function signalOfCode(code: number): Deno.Signal | null {
  if (code <= 128 || code > 128 + 31) return null;
  for (const [name, number] of Object.entries(SIGNALS)) {
    if (number === code - 128) return name as Deno.Signal;
  }
  return null;
}

/** Every descendant of `pid`, parents before children. */
async function descendants(pid: number): Promise<number[]> {
  const found: number[] = [];
  const queue = [pid];
  while (queue.length > 0) {
    const parent = queue.shift()!;
    const tasks = await Array.fromAsync(Deno.readDir(`/proc/${parent}/task`)).catch(() => []);
    for (const task of tasks) {
      const text = await Deno.readTextFile(`/proc/${parent}/task/${task.name}/children`).catch(() =>
        ""
      );
      for (const child of text.split(" ").filter(Boolean).map(Number)) {
        found.push(child);
        queue.push(child);
      }
    }
  }
  return found;
}

/** How many pid namespaces deep a process sits (its NSpid entries), 0 when unknown. */
async function pidDepth(pid: number | "self"): Promise<number> {
  const status = await Deno.readTextFile(`/proc/${pid}/status`).catch(() => "");
  const line = /^NSpid:\s+(.*)$/m.exec(status);
  return line ? line[1]!.trim().split(/\s+/).length : 0;
}

function send(pid: number, signal: Deno.Signal): void {
  try {
    Deno.kill(pid, signal);
  } catch {
    // Gone already, or exiting: nothing to signal.
  }
}

/**
 * Signals the sandboxed tree under `root`. Before the sandbox exists (the
 * wrapper is still setting up) the wrapper itself gets the signal; SIGKILL
 * also goes to the tool, whose death takes the namespace with it.
 */
export async function signalSandbox(root: number, signal: Deno.Signal): Promise<void> {
  const own = await pidDepth("self");
  const inside: number[] = [];
  for (const pid of await descendants(root)) {
    if (await pidDepth(pid) > own) inside.push(pid);
  }
  if (signal === "SIGKILL" || inside.length === 0) send(root, signal);
  for (const pid of inside) send(pid, signal);
}
