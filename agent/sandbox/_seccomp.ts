/**
 * The seccomp filter of every sandbox, on both backends, from one table
 * ({@link SECCOMP_RULES}) modelled on Docker's and Flatpak's defaults: every
 * system call is allowed but those listed, which fail with an errno. The
 * list and the reason for each entry are in SECURITY.md too.
 *
 * bubblewrap takes a classic BPF program (`bwrap --seccomp FD`): libseccomp
 * (`libseccomp.so.2`, through Deno.dlopen) compiles the table into one at
 * sandbox creation, for the native ABI and the compat ABIs a process could
 * switch to (x86_64: i386 and x32; aarch64: arm). runc takes the OCI
 * `linux.seccomp` object built from the same table, and compiles it with
 * the same libseccomp.
 * @module
 */

const EPERM = 1;
const ENOSYS = 38;
const CLONE_NEWUSER = 0x10000000;
const TIOCSTI = 0x5412;
const TIOCLINUX = 0x541c;

/** One entry of the filter: these calls fail with `errno` (when `arg` matches, if given). */
export interface SeccompRule {
  names: readonly string[];
  errno: number;
  /** Only when `(args[index] & mask) === value`. */
  arg?: { index: number; mask: number; value: number };
  /** Why it is refused. */
  why: string;
}

/**
 * Personality flags that weaken the address space (ASLR off, executable
 * data, a mappable page zero, the legacy layouts); PER_LINUX32 and UNAME26
 * stay allowed. One rule per flag: a rule compares each argument once.
 */
const PERSONALITY_FLAGS = {
  ADDR_NO_RANDOMIZE: 0x0040000,
  MMAP_PAGE_ZERO: 0x0100000,
  ADDR_COMPAT_LAYOUT: 0x0200000,
  READ_IMPLIES_EXEC: 0x0400000,
  ADDR_LIMIT_32BIT: 0x0800000,
  ADDR_LIMIT_3GB: 0x8000000,
};

/** The table: what a one-off may not do, and why. */
export const SECCOMP_RULES: readonly SeccompRule[] = [
  {
    names: ["unshare", "clone"],
    errno: EPERM,
    arg: { index: 0, mask: CLONE_NEWUSER, value: CLONE_NEWUSER },
    why: "a new user namespace gives its creator every capability inside it: kernel attack surface",
  },
  {
    names: ["clone3"],
    errno: ENOSYS,
    why: "its flags sit in memory a filter cannot read; ENOSYS makes libc fall back to clone",
  },
  { names: ["setns"], errno: EPERM, why: "joining other namespaces" },
  {
    names: ["io_uring_setup", "io_uring_enter", "io_uring_register"],
    errno: ENOSYS,
    why: "a large, often-exploited kernel surface that bypasses per-call filtering; ENOSYS, so " +
      "programs fall back as on a kernel without it",
  },
  {
    names: ["keyctl", "add_key", "request_key"],
    errno: EPERM,
    why: "the kernel keyring is not namespaced",
  },
  { names: ["bpf"], errno: EPERM, why: "BPF programs: kernel attack surface" },
  {
    names: ["perf_event_open"],
    errno: EPERM,
    why: "performance counters leak other processes' activity",
  },
  {
    names: ["userfaultfd"],
    errno: EPERM,
    why: "lets an exploit stall the kernel at a chosen page fault",
  },
  {
    names: ["kexec_load", "kexec_file_load", "init_module", "finit_module", "delete_module"],
    errno: EPERM,
    why: "loading kernels and kernel modules",
  },
  {
    names: [
      "mount",
      "umount2",
      "pivot_root",
      "move_mount",
      "open_tree",
      "fsopen",
      "fsconfig",
      "fsmount",
      "fspick",
      "mount_setattr",
      "chroot",
    ],
    errno: EPERM,
    why: "the sandbox's file system is fixed once it starts",
  },
  {
    names: ["ptrace", "process_vm_readv", "process_vm_writev", "kcmp", "pidfd_getfd"],
    errno: EPERM,
    why: "inspecting or changing other processes (and a long history of kernel bugs)",
  },
  ...Object.entries(PERSONALITY_FLAGS).map(([flag, bit]): SeccompRule => ({
    names: ["personality"],
    errno: EPERM,
    arg: { index: 0, mask: bit, value: bit },
    why: `personality ${flag} weakens the address space`,
  })),
  ...[["TIOCSTI", TIOCSTI], ["TIOCLINUX", TIOCLINUX]].map(([name, cmd]): SeccompRule => ({
    names: ["ioctl"],
    errno: EPERM,
    arg: { index: 1, mask: 0xffffffff, value: cmd as number },
    why: `${name} pushes bytes into a terminal's input: typing into the user's terminal`,
  })),
  {
    names: ["acct", "swapon", "swapoff", "reboot", "syslog", "quotactl", "nfsservctl"],
    errno: EPERM,
    why: "host administration",
  },
  {
    names: ["settimeofday", "clock_settime", "clock_adjtime", "adjtimex", "stime"],
    errno: EPERM,
    why: "the host's clock",
  },
  {
    names: ["open_by_handle_at", "name_to_handle_at", "lookup_dcookie"],
    errno: EPERM,
    why: "file handles reach files outside the sandbox's mounts",
  },
  {
    names: ["iopl", "ioperm", "vm86", "vm86old", "uselib", "_sysctl", "ustat", "sysfs"],
    errno: EPERM,
    why: "obsolete or hardware-level calls nothing here needs",
  },
];

interface Arch {
  /** libseccomp's (and the kernel's AUDIT_ARCH_*) token for the ABI. */
  token: number;
  /** Its name in the OCI runtime spec, as runc wants it. */
  oci: string;
}

/** Native ABI first, then the compat ABIs a process could switch to. */
const ARCHES: Record<string, Arch[]> = {
  x86_64: [
    { token: 0xc000003e, oci: "SCMP_ARCH_X86_64" },
    { token: 0x40000003, oci: "SCMP_ARCH_X86" },
    { token: 0x4000003e, oci: "SCMP_ARCH_X32" },
  ],
  aarch64: [
    { token: 0xc00000b7, oci: "SCMP_ARCH_AARCH64" },
    { token: 0x40000028, oci: "SCMP_ARCH_ARM" },
  ],
};

function archesOf(arch: string): Arch[] {
  const arches = ARCHES[arch];
  if (!arches) throw new Error(`Cannot build a seccomp filter for architecture "${arch}"`);
  return arches;
}

const SCMP_ACT_ALLOW = 0x7fff0000;
const SCMP_ACT_ERRNO = 0x00050000;
const SCMP_CMP_MASKED_EQ = 7;
const O_WRONLY_CREAT_TRUNC_CLOEXEC = 0o1 | 0o100 | 0o1000 | 0o2000000;

const LIBSECCOMP = {
  seccomp_init: { parameters: ["u32"], result: "pointer" },
  seccomp_arch_add: { parameters: ["pointer", "u32"], result: "i32" },
  seccomp_syscall_resolve_name: { parameters: ["buffer"], result: "i32" },
  seccomp_rule_add_array: {
    parameters: ["pointer", "u32", "i32", "u32", "buffer"],
    result: "i32",
  },
  seccomp_export_bpf: { parameters: ["pointer", "i32"], result: "i32" },
  seccomp_release: { parameters: ["pointer"], result: "void" },
} as const;

const LIBC = {
  open: { parameters: ["buffer", "i32", "u32"], result: "i32" },
  close: { parameters: ["i32"], result: "i32" },
} as const;

function cString(text: string): Uint8Array<ArrayBuffer> {
  return new TextEncoder().encode(`${text}\0`) as Uint8Array<ArrayBuffer>;
}

/** Compiles the table with libseccomp into a classic BPF program at `path`, for `bwrap --seccomp`. */
export function writeSeccompProgram(path: string, arch: string = Deno.build.arch): void {
  const arches = archesOf(arch);
  let seccomp;
  try {
    seccomp = Deno.dlopen("libseccomp.so.2", LIBSECCOMP);
  } catch (err) {
    throw new Error(
      "Cannot build the sandbox's seccomp filter: libseccomp.so.2 is missing (apt-get install libseccomp2)",
      { cause: err },
    );
  }
  const libc = Deno.dlopen("libc.so.6", LIBC);
  const ctx = seccomp.symbols.seccomp_init(SCMP_ACT_ALLOW);
  try {
    if (ctx === null) {
      throw new Error("Cannot build the sandbox's seccomp filter: seccomp_init failed");
    }
    for (const { token } of arches.slice(1)) {
      const rc = seccomp.symbols.seccomp_arch_add(ctx, token);
      if (rc !== 0 && rc !== -17) {
        throw new Error(`Cannot add seccomp architecture ${token}: ${rc}`);
      }
    }
    for (const rule of SECCOMP_RULES) {
      const cmp = new Uint8Array(24);
      const view = new DataView(cmp.buffer);
      if (rule.arg) {
        view.setUint32(0, rule.arg.index, true);
        view.setUint32(4, SCMP_CMP_MASKED_EQ, true);
        view.setBigUint64(8, BigInt(rule.arg.mask), true);
        view.setBigUint64(16, BigInt(rule.arg.value), true);
      }
      for (const name of rule.names) {
        const nr = seccomp.symbols.seccomp_syscall_resolve_name(cString(name));
        // Unknown to this libseccomp: no ABI it filters has the call.
        if (nr === -1) continue;
        const rc = seccomp.symbols.seccomp_rule_add_array(
          ctx,
          SCMP_ACT_ERRNO | rule.errno,
          nr,
          rule.arg ? 1 : 0,
          cmp,
        );
        if (rc !== 0) throw new Error(`Cannot add the seccomp rule for "${name}": error ${-rc}`);
      }
    }
    const fd = libc.symbols.open(cString(path), O_WRONLY_CREAT_TRUNC_CLOEXEC, 0o644);
    if (fd < 0) throw new Error(`Cannot write the seccomp filter to "${path}"`);
    const rc = seccomp.symbols.seccomp_export_bpf(ctx, fd);
    libc.symbols.close(fd);
    if (rc !== 0) throw new Error(`Cannot export the seccomp filter: error ${-rc}`);
  } finally {
    if (ctx !== null) seccomp.symbols.seccomp_release(ctx);
    seccomp.close();
    libc.close();
  }
}

/** The same filter as the OCI runtime spec's `linux.seccomp` object for runc. */
export function ociSeccomp(arch: string = Deno.build.arch): Record<string, unknown> {
  return {
    defaultAction: "SCMP_ACT_ALLOW",
    architectures: archesOf(arch).map((a) => a.oci),
    syscalls: SECCOMP_RULES.map((rule) => ({
      names: rule.names,
      action: "SCMP_ACT_ERRNO",
      errnoRet: rule.errno,
      ...(rule.arg
        ? {
          args: [{
            index: rule.arg.index,
            value: rule.arg.mask,
            valueTwo: rule.arg.value,
            op: "SCMP_CMP_MASKED_EQ",
          }],
        }
        : {}),
    })),
  };
}
