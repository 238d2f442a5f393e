/**
 * The seccomp filter of every sandbox: it refuses the ioctls that push bytes
 * into a terminal's input queue (TIOCSTI) or drive a virtual console
 * (TIOCLINUX). Without it a sandboxed process could type commands into the
 * terminal it shares with the agent or with the attached user.
 *
 * bubblewrap takes a classic BPF program (`bwrap --seccomp FD`); runc takes
 * the OCI `linux.seccomp` object. Both are built here from the same table.
 * @module
 */

const TIOCSTI = 0x5412;
const TIOCLINUX = 0x541c;
const BLOCKED_IOCTLS = [TIOCSTI, TIOCLINUX];
const EPERM = 1;

interface Arch {
  /** AUDIT_ARCH_* value the kernel puts in seccomp_data.arch. */
  audit: number;
  /** The ioctl syscall number in that ABI. */
  ioctl: number;
  /** libseccomp's name for the ABI, as runc wants it. */
  oci: string;
}

/** Native ABI first, then the compat ABIs a process could switch to. */
const ARCHES: Record<string, Arch[]> = {
  x86_64: [
    { audit: 0xc000003e, ioctl: 16, oci: "SCMP_ARCH_X86_64" },
    { audit: 0x40000003, ioctl: 54, oci: "SCMP_ARCH_X86" },
  ],
  aarch64: [
    { audit: 0xc00000b7, ioctl: 29, oci: "SCMP_ARCH_AARCH64" },
    { audit: 0x40000028, ioctl: 54, oci: "SCMP_ARCH_ARM" },
  ],
};

// Classic BPF opcodes and seccomp return values (linux/filter.h, linux/seccomp.h).
const LD_W_ABS = 0x20;
const JEQ_K = 0x15;
const JGE_K = 0x35;
const RET_K = 0x06;
const RET_ALLOW = 0x7fff0000;
const RET_ERRNO = 0x00050000;
// Offsets in struct seccomp_data; args[1] low word on little-endian hosts,
// which is all the kernel compares (the ioctl command is an unsigned int).
const OFFSET_NR = 0;
const OFFSET_ARCH = 4;
const OFFSET_ARG1_LOW = 24;
const X32_SYSCALL_BIT = 0x40000000;

type Insn = { code: number; k: number; jt?: string; jf?: string } | { label: string };

function archesOf(arch: string): Arch[] {
  const arches = ARCHES[arch];
  if (!arches) throw new Error(`Cannot build a seccomp filter for architecture "${arch}"`);
  return arches;
}

/** The filter as a classic BPF program (struct sock_filter[]) for `bwrap --seccomp`. */
export function seccompProgram(arch: string = Deno.build.arch): Uint8Array {
  const arches = archesOf(arch);
  const insns: Insn[] = [{ code: LD_W_ABS, k: OFFSET_ARCH }];
  arches.forEach((a, i) =>
    insns.push({ code: JEQ_K, k: a.audit, jt: `arch${i}`, jf: `next${i}` }, { label: `next${i}` })
  );
  // An ABI this table does not know cannot be checked: refuse it.
  insns.push({ code: RET_K, k: RET_ERRNO | EPERM });
  arches.forEach((a, i) => {
    insns.push({ label: `arch${i}` }, { code: LD_W_ABS, k: OFFSET_NR });
    // x32 syscalls share the x86_64 arch value; nothing here needs them.
    if (a.audit === 0xc000003e) {
      insns.push({ code: JGE_K, k: X32_SYSCALL_BIT, jt: "deny", jf: `nr${i}` }, {
        label: `nr${i}`,
      });
    }
    insns.push({ code: JEQ_K, k: a.ioctl, jt: "ioctl", jf: "allow" });
  });
  insns.push({ label: "ioctl" }, { code: LD_W_ABS, k: OFFSET_ARG1_LOW });
  BLOCKED_IOCTLS.forEach((cmd, i) =>
    insns.push({ code: JEQ_K, k: cmd, jt: "deny", jf: `cmd${i}` }, { label: `cmd${i}` })
  );
  insns.push({ label: "allow" }, { code: RET_K, k: RET_ALLOW });
  insns.push({ label: "deny" }, { code: RET_K, k: RET_ERRNO | EPERM });
  return assemble(insns);
}

/** Resolves labels into the relative jumps of classic BPF and encodes the program. */
function assemble(insns: Insn[]): Uint8Array {
  const labels = new Map<string, number>();
  const code: Exclude<Insn, { label: string }>[] = [];
  for (const insn of insns) {
    if ("label" in insn) labels.set(insn.label, code.length);
    else code.push(insn);
  }
  const out = new Uint8Array(code.length * 8);
  const view = new DataView(out.buffer);
  code.forEach((insn, i) => {
    const jump = (label: string | undefined): number => {
      if (label === undefined) return 0;
      const offset = labels.get(label)! - i - 1;
      if (offset < 0 || offset > 255) throw new Error(`Cannot assemble seccomp jump to "${label}"`);
      return offset;
    };
    view.setUint16(i * 8, insn.code, true);
    view.setUint8(i * 8 + 2, jump(insn.jt));
    view.setUint8(i * 8 + 3, jump(insn.jf));
    view.setUint32(i * 8 + 4, insn.k, true);
  });
  return out;
}

/** The same filter as the OCI runtime spec's `linux.seccomp` object for runc. */
export function ociSeccomp(arch: string = Deno.build.arch): Record<string, unknown> {
  return {
    defaultAction: "SCMP_ACT_ALLOW",
    architectures: archesOf(arch).map((a) => a.oci),
    syscalls: BLOCKED_IOCTLS.map((cmd) => ({
      names: ["ioctl"],
      action: "SCMP_ACT_ERRNO",
      errnoRet: EPERM,
      args: [{ index: 1, value: 0xffffffff, valueTwo: cmd, op: "SCMP_CMP_MASKED_EQ" }],
    })),
  };
}
