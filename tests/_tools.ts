/**
 * Every program and service outside Deno and bubblewrap that a test uses,
 * looked up once. A test that needs one this machine lacks is ignored, says
 * why in its name, and is written down for the summary `tests/run.ts`
 * prints at the end of `deno task test` (which fails instead in CI).
 * @module
 */
import { detectCgroups } from "../agent/sandbox/mod.ts";

/** What a test may need beyond the README's prerequisites. */
export type Need =
  | "nc"
  | "curl"
  | "ncat"
  | "socat"
  | "openssl"
  | "chromium"
  | "runc"
  | "python3"
  | "pasta"
  | "ip"
  | "asciinema"
  | "jq"
  | "script"
  | "prometheus_parser"
  | "postgres"
  | "pg_server"
  | "podman"
  | "mmdebstrap"
  | "systemd-analyze"
  | "nginx"
  | "haproxy"
  | "tinyproxy"
  | "root"
  | "cgroups";

/** One need as found on this machine. */
export interface Requirement {
  /** The Debian package that provides it, when a package does. */
  package?: string;
  /** Where it was found; undefined when it is missing. */
  path: string | undefined;
  /** What to do when it is missing, for what no package alone provides. */
  hint?: string;
}

/** The environment variable that names the file `needs` records skipped tests in. */
export const SKIP_LOG_ENV = "ONEOFF_TEST_SKIP_LOG";

/** The PostgreSQL URL the store tests may create schemas in. */
export const PG_URL: string | undefined = Deno.env.get("ONEOFF_TEST_POSTGRES") || undefined;

/** The PATH of commands inside a sandbox (its /usr is the host's). */
const SANDBOX_PATH = ["/usr/local/bin", "/usr/bin", "/bin"];
/** Where the runc sandbox looks for runc (agent/sandbox/runc.ts). */
const RUNC_PATHS = ["/usr/sbin", "/usr/bin", "/usr/local/sbin", "/usr/local/bin"];

function executable(path: string): boolean {
  try {
    const info = Deno.statSync(path);
    return info.isFile && ((info.mode ?? 0) & 0o111) !== 0;
  } catch {
    return false;
  }
}

function fileAt(path: string): string | undefined {
  try {
    return Deno.statSync(path).isFile ? path : undefined;
  } catch {
    return undefined;
  }
}

function lookup(name: string, dirs: string[]): string | undefined {
  return dirs.map((dir) => `${dir}/${name}`).find(executable);
}

const PATH_DIRS = (Deno.env.get("PATH") ?? "").split(":").filter((dir) => dir !== "");
const onPath = (name: string) => lookup(name, PATH_DIRS);
const ROOT = Deno.uid() === 0;

/** The PostgreSQL server programs' directory (Debian: /usr/lib/postgresql/N/bin), newest first. */
function postgresBin(): string | undefined {
  try {
    const versions = [...Deno.readDirSync("/usr/lib/postgresql")].map((e) => e.name)
      .filter((name) => /^\d+$/.test(name)).sort((a, b) => Number(b) - Number(a));
    return versions.map((v) => `/usr/lib/postgresql/${v}/bin`)
      .find((dir) => executable(`${dir}/initdb`) && executable(`${dir}/pg_ctl`));
  } catch {
    return undefined;
  }
}
const cgroups = ROOT ? await detectCgroups() : { reason: "not root" };

/** Every need, and what was found for it. */
export const REQUIREMENTS: Record<Need, Requirement> = {
  nc: { package: "netcat-openbsd", path: onPath("nc") },
  // Clients from distinct loopback addresses (--interface 127.0.0.N).
  curl: { package: "curl", path: onPath("curl") },
  ncat: { package: "ncat", path: onPath("ncat") },
  socat: { package: "socat", path: onPath("socat") },
  openssl: { package: "openssl", path: onPath("openssl") },
  chromium: { package: "chromium", path: onPath("chromium") },
  runc: { package: "runc", path: lookup("runc", RUNC_PATHS) },
  // Run inside the sandbox, which sees only the host's /usr.
  python3: { package: "python3", path: lookup("python3", SANDBOX_PATH) },
  asciinema: { package: "asciinema", path: onPath("asciinema") },
  // Network "isolated" (the default) runs pasta from passt; the network tests make namespaces with ip.
  pasta: { package: "passt", path: lookup("pasta", ["/usr/bin"]) },
  ip: { package: "iproute2", path: lookup("ip", ["/usr/sbin", "/usr/bin", "/sbin", "/bin"]) },
  script: { package: "bsdutils", path: onPath("script") },
  // The README's examples read --attach-info with it.
  jq: { package: "jq", path: onPath("jq") },
  // The Prometheus text-format parser the metrics tests read /metrics with.
  prometheus_parser: {
    package: "python3-prometheus-client",
    path: fileAt("/usr/lib/python3/dist-packages/prometheus_client/parser.py"),
  },
  postgres: {
    package: "postgresql",
    path: PG_URL,
    hint: "start it and set ONEOFF_TEST_POSTGRES=postgres://USER:PASSWORD@127.0.0.1:5432/DB " +
      "(a database the tests may create schemas in; .ci/run shows how)",
  },
  // A private cluster a test may stop and start (never the shared one).
  pg_server: {
    package: "postgresql",
    path: postgresBin(),
    hint: "the PostgreSQL server programs (initdb, pg_ctl) under /usr/lib/postgresql/*/bin",
  },
  // The container image is built and run for real (tests/container_test.ts).
  podman: { package: "podman", path: onPath("podman") },
  mmdebstrap: { package: "mmdebstrap", path: onPath("mmdebstrap") },
  // deploy/*.service are checked with it (Debian's systemd package).
  "systemd-analyze": { package: "systemd", path: onPath("systemd-analyze") },
  // docs/install.md's reverse proxy, in front of a real server.
  // The reverse proxy: docs/install.md's site, and trusted X-Forwarded-For / WebSocket upgrade.
  nginx: { package: "nginx", path: lookup("nginx", [...PATH_DIRS, "/usr/sbin", "/sbin"]) },
  // The load balancer in front of several servers (tests/cluster_test.ts).
  haproxy: { package: "haproxy", path: lookup("haproxy", [...PATH_DIRS, "/usr/sbin", "/sbin"]) },
  // An HTTP CONNECT proxy on loopback: the relay through HTTPS_PROXY (tests/relay_proxy_test.ts).
  tinyproxy: {
    package: "tinyproxy",
    path: lookup("tinyproxy", [...PATH_DIRS, "/usr/sbin", "/sbin"]),
  },
  root: { path: ROOT ? "uid 0" : undefined, hint: "run the tests as root" },
  cgroups: {
    path: "reason" in cgroups ? undefined : `cgroup v${cgroups.version}`,
    hint: `root and cgroup memory, pids and cpu controllers (${
      "reason" in cgroups ? cgroups.reason : "found"
    })`,
  },
};

/** The needs of `wanted` this machine lacks. */
export function missing(wanted: readonly Need[]): Need[] {
  return wanted.filter((need) => REQUIREMENTS[need].path === undefined);
}

/** The path of a program that `needs` made sure of; throws when it is missing. */
export function tool(need: Need): string {
  const path = REQUIREMENTS[need].path;
  if (path === undefined) throw new Error(`Cannot find "${need}": declare it with needs()`);
  return path;
}

/** A line of the skip log: one ignored test and what it lacked. */
export interface SkipRecord {
  test: string;
  missing: Need[];
}

/**
 * `test` ignored, its name saying why, when this machine lacks any of
 * `wanted`; `test` unchanged otherwise. Ignored tests are appended to the
 * file named by `ONEOFF_TEST_SKIP_LOG`, when set.
 */
export function needs(wanted: readonly Need[], test: Deno.TestDefinition): Deno.TestDefinition {
  const lacking = missing(wanted);
  if (lacking.length === 0 || test.ignore === true) return test;
  const log = Deno.env.get(SKIP_LOG_ENV);
  if (log) {
    const record: SkipRecord = { test: test.name, missing: lacking };
    // One short O_APPEND write per line: parallel test workers do not interleave.
    Deno.writeTextFileSync(log, JSON.stringify(record) + "\n", { append: true });
  }
  return { ...test, name: `${test.name} [skipped: no ${lacking.join(", ")}]`, ignore: true };
}
