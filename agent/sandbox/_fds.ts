/**
 * No descriptor of the agent's crosses into a sandbox but the run's stdio:
 * bubblewrap hands every descriptor it inherits to the sandboxed process,
 * and a descriptor the agent itself inherited without close-on-exec (from a
 * service manager, a shell's `9<file`) would otherwise reach every run.
 * Deno and its libraries open their own with close-on-exec; the ones
 * inherited are marked here, once, before the first sandbox starts.
 * @module
 */

const F_GETFD = 1;
const F_SETFD = 2;
const FD_CLOEXEC = 1;

let done = false;

/** Marks every open descriptor above 2 of this process close-on-exec. */
export function closeInheritedOnExec(): void {
  if (done) return;
  const libc = Deno.dlopen("libc.so.6", {
    fcntl: { parameters: ["i32", "i32", "i32"], result: "i32" },
  });
  try {
    for (const entry of Deno.readDirSync("/proc/self/fd")) {
      const fd = Number(entry.name);
      if (!Number.isInteger(fd) || fd <= 2) continue;
      const flags = libc.symbols.fcntl(fd, F_GETFD, 0);
      // Gone meanwhile (the directory's own descriptor): nothing to mark.
      if (flags < 0) continue;
      if ((flags & FD_CLOEXEC) === 0) libc.symbols.fcntl(fd, F_SETFD, flags | FD_CLOEXEC);
    }
    done = true;
  } finally {
    libc.close();
  }
}
