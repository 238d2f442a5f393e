/**
 * Every command of the program and its flags, declared once: `--help`,
 * `oneoff help CMD`, usage errors, `oneoff completion` and the flag parsing
 * of the CLI and the roles all read this table. Plain data, no imports, so
 * that loading it costs nothing at start-up.
 * @module
 */

/** One flag of a command. */
export interface FlagSpec {
  /** Long name, without `--`. */
  name: string;
  /** One letter, without `-`. */
  short?: string;
  /** Present when the flag takes a value: its placeholder, e.g. `APP`. */
  value?: string;
  /** May be given several times. */
  multiple?: boolean;
  description: string;
  /** The value used when the flag is absent, as shown in help. */
  default?: string;
  /** Accepted but not shown in help (kept for muscle memory). */
  hidden?: boolean;
  /**
   * A role's secret: masked by `--print-config`, and given a `NAME-file`
   * twin flag that reads it from a file (keep it out of `/proc/PID/cmdline`).
   */
  secret?: boolean;
  /** A role's flag that only the command line gives: no `ONEOFF_*` variable, no config key. */
  commandLineOnly?: boolean;
}

/** One command: what help shows and what parsing accepts. */
export interface CommandSpec {
  name: string;
  /** One line for the overview. */
  summary: string;
  /** Usage lines, without the leading `oneoff `. */
  usage: string[];
  /** Subcommand words, for completion. */
  subcommands?: string[];
  /** Paragraphs shown after the usage in the command's help. */
  notes?: string[];
  flags: FlagSpec[];
  examples: string[];
}

const APP: FlagSpec = {
  name: "app",
  short: "a",
  value: "APP",
  description: "The app (default: $ONEOFF_APP)",
};
const JSON_FLAG: FlagSpec = { name: "json", description: "Print JSON, for scripts" };
const SANDBOX: FlagSpec = {
  name: "sandbox",
  value: "bwrap|runc",
  description: "How one-offs are isolated",
  default: "bwrap",
};

/** How a role reads its settings, shown in `oneoff help server` and `oneoff help agent`. */
const ROLE_CONFIG_NOTE =
  'Every flag may also come from an environment variable ONEOFF_<FLAG> (--data-dir is ONEOFF_DATA_DIR) or a key of the JSON config file --config PATH (or ONEOFF_CONFIG), named as the flag: {"data-dir": "/var/lib/oneoff"}. Precedence: command line > environment > config file > default. A secret (--join-token) is best read from a file, --join-token-file PATH (or ONEOFF_JOIN_TOKEN_FILE, or the config key), which must not be readable by group or others unless it is a systemd credential under $CREDENTIALS_DIRECTORY. --print-config shows the settings, where each comes from, secrets masked, and exits.';
const CONFIG_FLAGS: FlagSpec[] = [
  {
    name: "config",
    value: "PATH",
    description: "A JSON file of settings, keys named as the flags (default: $ONEOFF_CONFIG)",
    commandLineOnly: true,
  },
  {
    name: "print-config",
    description: "Print the settings and their sources as JSON, secrets masked, and exit",
    commandLineOnly: true,
  },
];
const JOIN_TOKEN_FILE: FlagSpec = {
  name: "join-token-file",
  value: "PATH",
  description: "Read the join token from this file (0600, or a systemd credential)",
};

/** The commands, in the order the overview lists them. */
export const COMMANDS: readonly CommandSpec[] = [
  {
    name: "run",
    summary: "Start a one-off: attached to this terminal, or detached (-d)",
    usage: [
      "run -a APP [-d] [-e K=V]... [-f PATH]... [-s SIZE] [-t TYPE] [--timeout DURATION] [--reason TEXT] [--no-tty] [--via direct|server|auto] [--silent] [--attach-info] [--json] [--] COMMAND...",
    ],
    notes: [
      "Options come before the command: everything from the command's first word on is the command's own (use -- when it starts with a dash).",
      "One argument is a shell command line, run with /bin/sh -c as it is: 'for i in 1 2; do echo $i; done' loops in the one-off. Several arguments are the words of one command: each word with spaces or shell characters in it is quoted, so `oneoff run -- grep \"a b\" f` runs `grep 'a b' f`. The command line that ran is shown by `oneoff ps` and the timeline.",
      "The CLI exits with the process's exit code (124 when it timed out).",
      "--via chooses the way to the attach stream: direct (the agent's port 5000), server (a WebSocket relay through the server's HTTP(S) port: through firewalls, HTTPS_PROXY and reverse proxies, to agents behind NAT) or auto, the default (direct if the port answers within 1.5 s, else the server, said once on stderr). ONEOFF_VIA sets the default.",
      "When the server cannot be reached (restarting, a proxy's 502/503/504, a dropped connection), the CLI says so once and retries, 250 ms doubling to 5 s between tries: for 30 s to start the run (every try carries the same Idempotency-Key, so a retry never starts a second run) and for 10 minutes to learn the run's outcome, which it then exits with. Other commands retry their reads for 30 s.",
    ],
    flags: [
      APP,
      { name: "detached", short: "d", description: "Start at once; output goes to the app's logs" },
      {
        name: "env",
        short: "e",
        value: "K=V",
        multiple: true,
        description: "Set a variable for this run (over the app's)",
      },
      {
        name: "file",
        short: "f",
        value: "PATH",
        multiple: true,
        description: "Upload a file or directory to /tmp/uploads",
      },
      { name: "size", short: "s", value: "S|M|L|XL", description: "Resources", default: "M" },
      { name: "type", short: "t", value: "TYPE", description: "Run the Procfile type's command" },
      {
        name: "timeout",
        value: "DURATION",
        description: "Longest a run may take, e.g. 90s, 10m, 2h",
        default: "24h",
      },
      {
        name: "reason",
        value: "TEXT",
        description:
          "Why you run it (up to 500 characters): shown in ps, the timeline and the recording",
      },
      { name: "tty", description: "Use a terminal even when stdin is not one" },
      { name: "no-tty", description: "A plain byte stream, no terminal (for pipes)" },
      {
        name: "via",
        value: "direct|server|auto",
        description: "Attach straight to the agent's port, through the server, or either",
        default: "auto",
      },
      { name: "silent", description: "Print nothing of the CLI's own on stderr" },
      {
        name: "attach-info",
        description: "Print host, port and secret as JSON instead of attaching (for nc)",
      },
      { name: "json", description: "With -d: print the started run as JSON" },
      {
        name: "exit-code",
        short: "x",
        description: "Accepted for heroku habits: the exit code is always passed on",
        hidden: true,
      },
    ],
    examples: [
      "oneoff run -a demo bash",
      "oneoff run -a demo -t hello",
      "oneoff run -a demo -e DEBUG=1 -- rake db:migrate",
      "oneoff run -a demo -d -- 'for i in 1 2 3; do echo $i; sleep 1; done'",
      "oneoff run -a demo --via server -- rake db:migrate",
      "label=$(oneoff run -a demo -d --json -- rake db:migrate | jq -r .label)",
    ],
  },
  {
    name: "attach",
    summary: "Reattach to a running attached one-off, e.g. from another terminal",
    usage: ["attach -a APP [--via direct|server|auto] [--silent] one-off-N"],
    notes: [
      "`oneoff run` reattaches by itself when its connection drops; `attach` takes the session over from another terminal (the first one is told and let go). It replays the output the agent still buffers and exits with the process's exit code.",
      "Only the one who started the run, or an admin, may attach to it. A run that has ended cannot be attached to.",
    ],
    flags: [
      APP,
      {
        name: "via",
        value: "direct|server|auto",
        description: "Attach straight to the agent's port, through the server, or either",
        default: "auto",
      },
      { name: "silent", description: "Print nothing of the CLI's own on stderr" },
    ],
    examples: ["oneoff attach -a demo one-off-3", "oneoff attach -a demo --via server one-off-3"],
  },
  {
    name: "watch",
    summary: "Watch a running attached one-off live, read-only",
    usage: ["watch -a APP [--from-now] [--silent] one-off-N"],
    notes: [
      "Shows the session's output as its user sees it, from its start (or, with --from-now, from now on), until it ends; then says `session ended (exit N)` on stderr and exits 0. Nothing typed here reaches the session, and it cannot be resized from here: stdin is not read. Ctrl-C stops watching; the session goes on.",
      "Any admin or member of the app may watch. The session's user is told on their stderr (`oneoff: NAME is watching this session`), each watcher once; every watch is on the app's timeline (started, stopped) and marked in the recording. What a watcher sees is the recording, within 200 ms of the user. A detached run has no session (see logs -f); an ended one is replayed with audit show.",
    ],
    flags: [
      APP,
      { name: "from-now", description: "Start with what is printed from now on, not the start" },
      { name: "silent", description: "Print nothing of the CLI's own on stderr" },
    ],
    examples: ["oneoff watch -a demo one-off-3", "oneoff watch -a demo --from-now one-off-3"],
  },
  {
    name: "ps",
    summary: "List an app's one-offs",
    usage: ["ps -a APP [-n N] [--json]"],
    flags: [
      APP,
      { name: "limit", short: "n", value: "N", description: "How many", default: "20" },
      JSON_FLAG,
    ],
    examples: ["oneoff ps -a demo"],
  },
  {
    name: "stop",
    summary: "Stop a one-off",
    usage: ["stop -a APP one-off-N"],
    flags: [APP],
    examples: ["oneoff stop -a demo one-off-3"],
  },
  {
    name: "logs",
    summary: "Show an app's logs (detached one-offs' output)",
    usage: ["logs -a APP [-n N] [-f] [--filter one-off-N] [--json]"],
    flags: [
      APP,
      { name: "lines", short: "n", value: "N", description: "How many lines", default: "100" },
      { name: "follow", short: "f", description: "Keep printing new lines" },
      { name: "filter", value: "one-off-N", description: "Only this one-off's lines" },
      JSON_FLAG,
    ],
    examples: ["oneoff logs -a demo -f", "oneoff logs -a demo --filter one-off-3"],
  },
  {
    name: "apps",
    summary: "Create, list, show, configure and destroy apps",
    usage: [
      "apps list [--json]",
      "apps create NAME",
      "apps show NAME [--json]",
      "apps set NAME [--idle-timeout DURATION|default] [--reattach-grace DURATION|default] [--network isolated|host|none] [--host-ports PORTS|none] [--labels K=V,...|none] [--require-reason|--no-require-reason]",
      "apps destroy NAME [--confirm NAME]",
    ],
    subcommands: ["list", "create", "show", "set", "destroy"],
    notes: [
      "destroy deletes the app with its env, releases, runs and logs. Without --confirm it asks for the name on a terminal, and refuses elsewhere.",
      "set changes the app's next one-offs (a running one keeps what it started with). A member of the app may set --idle-timeout and --reattach-grace, up to the server's --max-idle-timeout and --max-reattach-grace; default goes back to the server's. Only an admin may set --network, --host-ports and --labels: they weaken the isolation between the app's one-offs and the host (SECURITY.md), or choose which hosts see them. With --labels, a one-off goes only to an approved agent that has every label; when none has them, oneoff run is refused with the reason. With --require-reason, every oneoff run of the app must say why (--reason); any member may turn it on, only an admin off. Every change is on the app's timeline, with who made it.",
    ],
    flags: [
      JSON_FLAG,
      { name: "confirm", value: "NAME", description: "destroy: the app's name again" },
      {
        name: "idle-timeout",
        value: "DURATION",
        description:
          "set: stop an attached one-off after this long with no byte either way, e.g. 10m, 2h",
        default: "30m",
      },
      {
        name: "reattach-grace",
        value: "DURATION",
        description:
          "set: how long a dropped CLI session may reattach before the process gets SIGHUP",
        default: "2m",
      },
      {
        name: "network",
        value: "isolated|host|none",
        description: "set (admins): the one-offs' network",
        default: "isolated",
      },
      {
        name: "host-ports",
        value: "PORTS",
        description:
          "set (admins): host loopback TCP ports an isolated one-off reaches on its own 127.0.0.1, e.g. 5432,6379",
        default: "none",
      },
      {
        name: "labels",
        value: "K=V,...",
        description:
          "set (admins): run the app's one-offs only on agents with these labels (oneoff agent --labels)",
        default: "none",
      },
      { name: "require-reason", description: "set: every run of the app must give --reason" },
      { name: "no-require-reason", description: "set (admins): runs need no reason any more" },
    ],
    examples: [
      "oneoff apps create myapp",
      "oneoff apps set myapp --idle-timeout 1h",
      "oneoff apps set myapp --host-ports 5432",
      "oneoff apps set myapp --require-reason",
      "oneoff apps show myapp",
      "oneoff apps destroy myapp --confirm myapp",
    ],
  },
  {
    name: "env",
    summary: "Show, get, set and unset an app's variables",
    usage: [
      "env -a APP [--json]",
      "env get -a APP KEY",
      "env set -a APP K=V...",
      "env unset -a APP K...",
    ],
    subcommands: ["get", "set", "unset"],
    flags: [APP, JSON_FLAG],
    examples: [
      "oneoff env set -a myapp DATABASE_URL=postgres://db/myapp",
      "oneoff env get -a myapp DATABASE_URL",
    ],
  },
  {
    name: "deploy",
    summary: "Deploy a slug: a .tar.gz or a directory to pack",
    usage: ["deploy -a APP PATH"],
    notes: ["On a terminal, the bytes sent so far are shown on stderr."],
    flags: [APP],
    examples: ["oneoff deploy -a myapp ./build", "oneoff deploy -a myapp slug.tar.gz"],
  },
  {
    name: "timeline",
    summary: "Every change to an app, with who made it",
    usage: ["timeline -a APP [-n N] [--json]"],
    flags: [
      APP,
      { name: "limit", short: "n", value: "N", description: "How many events", default: "50" },
      JSON_FLAG,
    ],
    examples: ["oneoff timeline -a demo"],
  },
  {
    name: "artifacts",
    summary: "List or download the files a one-off left in /tmp/downloads",
    usage: [
      "artifacts list -a APP one-off-N [--json]",
      "artifacts get -a APP one-off-N [NAME...] [-o DIR] [--force]",
    ],
    subcommands: ["list", "get"],
    notes: [
      "Whatever a run (attached or detached) leaves in /tmp/downloads when it ends is kept as its artifacts, up to the server's --max-artifact-bytes (1 GiB by default) per run, for as long as the run is kept (--run-retention).",
      "Only regular files directly in /tmp/downloads are kept: subdirectories, symbolic links, FIFOs and devices are refused, and so are names with control or invisible characters or longer than 200 bytes. Each refusal is in the run's end state (ps --json, the run page) and its timeline.",
      "get writes each file (all of them without NAME) into DIR (default .) through a temp file, renamed into place once its sha256 is the one the server stored; it refuses to replace an existing file unless --force.",
    ],
    flags: [
      APP,
      {
        name: "output",
        short: "o",
        value: "DIR",
        description: "get: where to write",
        default: ".",
      },
      { name: "force", description: "get: replace files that exist already" },
      JSON_FLAG,
    ],
    examples: [
      "oneoff run -a demo -d -- 'bin/report > /tmp/downloads/report.csv'",
      "oneoff artifacts list -a demo one-off-4",
      "oneoff artifacts get -a demo one-off-4 report.csv -o reports/",
    ],
  },
  {
    name: "audit",
    summary: "List, search, show or export session recordings; rotate the audit key",
    usage: [
      "audit list -a APP [--user U] [--since DURATION] [-n N] [--json]",
      "audit search -a APP TEXT [--user U] [--since DURATION] [--json]",
      "audit show -a APP one-off-N [--format text|json|cast] [--json]",
      "audit export -a APP one-off-N > x.cast",
      "audit rotate-key",
    ],
    subcommands: ["list", "search", "show", "export", "rotate-key"],
    notes: [
      "list shows the app's recorded sessions (attached runs), newest first: who, when, how long, the exit code, the bytes recorded, the command and the reason given with run --reason.",
      "search decrypts the sessions of the last --since (7d by default) on the server, newest first and one at a time (at most 1,000 sessions and 200 hits), and prints each line of input (⟩) or output that holds TEXT, as it is (case sensitive), with its time in the session. Every search is on the app's timeline, with who searched and how many hits, never the text.",
    ],
    flags: [
      APP,
      { name: "user", value: "U", description: "list, search: only sessions this user started" },
      {
        name: "since",
        value: "DURATION",
        description: "list, search: only sessions started this long ago at most",
        default: "7d",
      },
      {
        name: "limit",
        short: "n",
        value: "N",
        description: "list: how many sessions",
        default: "50",
      },
      {
        name: "format",
        value: "text|json|cast",
        description: "show: a plain-text transcript (for grep), the JSON readout, or asciicast",
        default: "text",
      },
      { name: "json", description: "Print as JSON (show: the same as --format json)" },
    ],
    examples: [
      "oneoff audit list -a demo --since 1d",
      "oneoff audit search -a demo 'DROP TABLE'",
      "oneoff audit show -a demo one-off-1 --format text | grep -n migrate",
      "oneoff audit export -a demo one-off-1 > s.cast",
    ],
  },
  {
    name: "login",
    summary: "Check and store the server and token (~/.config/oneoff/config.json)",
    usage: ["login --server URL --token T"],
    flags: [
      { name: "server", value: "URL", description: "The server (default: $ONEOFF_SERVER)" },
      { name: "token", value: "T", description: "An API token (default: $ONEOFF_TOKEN)" },
    ],
    examples: ["oneoff login --server https://oneoff.example.com --token oo_..."],
  },
  {
    name: "logout",
    summary: "Forget the stored server and token",
    usage: ["logout"],
    flags: [],
    examples: ["oneoff logout"],
  },
  {
    name: "whoami",
    summary: "Show the token's name, role and apps",
    usage: ["whoami [--json]"],
    flags: [JSON_FLAG],
    examples: ["oneoff whoami"],
  },
  {
    name: "tokens",
    summary: "Create, list and revoke API tokens (admins)",
    usage: [
      "tokens create [--role admin|member] [-a APP]... [--name NAME]",
      "tokens list [--json]",
      "tokens revoke ID|NAME",
    ],
    subcommands: ["create", "list", "revoke"],
    notes: [
      "A member token may use only its apps. The token is printed once, by create; list shows no secret. A revoked token stops working at once, dashboard sessions made with it included.",
    ],
    flags: [
      { name: "role", value: "admin|member", description: "create: the role", default: "member" },
      {
        name: "app",
        short: "a",
        value: "APP",
        multiple: true,
        description: "create: an app a member may use",
      },
      { name: "name", value: "NAME", description: "create: who the token is for" },
      JSON_FLAG,
    ],
    examples: [
      "oneoff tokens create --role member -a demo --name alice",
      "oneoff tokens list",
      "oneoff tokens revoke alice",
    ],
  },
  {
    name: "agents",
    summary: "List, approve and revoke agents; rotate the join token (admins)",
    usage: [
      "agents [list] [--json]",
      "agents approve NAME",
      "agents revoke NAME",
      "agents join-token rotate [--uses N] [--ttl DURATION]",
    ],
    subcommands: ["list", "approve", "revoke", "join-token"],
    notes: [
      "An agent enrolled with the join token is pending: it gets no run until approve (servers started with --auto-approve skip this; oneoff dev does). Revoke closes its channel at once, tells its runs to stop, and its credential no longer works (its runs end lost after the grace). The join token only enrols: rotate prints a new one, and the old ones stop enrolling; enrolled agents keep working.",
    ],
    flags: [
      JSON_FLAG,
      { name: "uses", value: "N", description: "join-token rotate: enrolments it allows" },
      { name: "ttl", value: "DURATION", description: "join-token rotate: how long it enrols" },
    ],
    examples: [
      "oneoff agents",
      "oneoff agents approve vm-3",
      "oneoff agents join-token rotate --uses 1 --ttl 1h",
    ],
  },
  {
    name: "completion",
    summary: "Print a shell completion script",
    usage: ["completion bash|zsh"],
    subcommands: ["bash", "zsh"],
    flags: [],
    examples: [
      'eval "$(oneoff completion bash)"      # in ~/.bashrc',
      'eval "$(oneoff completion zsh)"       # in ~/.zshrc',
    ],
  },
  {
    name: "dev",
    summary: "Server and agent on this machine (SQLite), with a demo app",
    usage: ["dev [--data-dir DIR] [--http ADDR] [--attach ADDR] [--sandbox bwrap|runc]"],
    flags: [
      { name: "data-dir", value: "DIR", description: "Where state is kept", default: "./.oneoff" },
      {
        name: "http",
        value: "ADDR",
        description: "The API and dashboard",
        default: "127.0.0.1:8080",
      },
      { name: "attach", value: "ADDR", description: "The attach port", default: "127.0.0.1:5000" },
      SANDBOX,
    ],
    examples: ["oneoff dev"],
  },
  {
    name: "server",
    summary: "The HTTP API and dashboard",
    usage: [
      "server [--http ADDR] [--database sqlite:PATH|postgres://...] [--data-dir DIR] [--advertise-url URL] [--join-token-file PATH] [--join-token-uses N] [--join-token-ttl DURATION] [--auto-approve] [--tls-cert PEM --tls-key PEM] [--trust-proxy LIST] [--audit-key-file PATH] [--max-slug-bytes N] [--max-slug-unpacked-bytes N] [--max-timeout DURATION] [--max-idle-timeout DURATION] [--max-reattach-grace DURATION] [--max-runs-per-app N] [--log-quota-per-run SIZE] [--app-log-quota SIZE] [--audit-quota-per-session SIZE] [--max-artifact-bytes SIZE] [--reattach-grace DURATION] [--config PATH] [--print-config]",
      "server [--log-retention DURATION] [--log-max-lines-per-app N] [--run-retention DURATION] [--audit-retention DURATION] [--keep-releases N] [--blob-grace DURATION]",
      "server backup --to DIR [--data-dir DIR] [--database URL] [--audit-key-file PATH]",
    ],
    subcommands: ["backup"],
    notes: [
      ROLE_CONFIG_NOTE,
      'Several servers may share one PostgreSQL database behind a load balancer, with the same key files (docs/install.md "Several servers"); a second server on one SQLite file is refused.',
      "Retention is enforced by a sweep at start and then hourly. Audit recordings (and who ran what) are kept after their app is destroyed, until --audit-retention ends; an admin lists them with GET /api/audit/runs?app=NAME and reads one with GET /api/audit/runs/RUN_ID. --audit-retention may not be shorter than --run-retention.",
      'backup writes a consistent copy while the server runs (SQLite: VACUUM INTO; PostgreSQL: pg_dump --format=custom) and the key files into DIR; copy the blob directory it names with rsync. See README "Backup and restore".',
    ],
    flags: [
      { name: "http", value: "ADDR", description: "Where to listen", default: "0.0.0.0:8080" },
      {
        name: "database",
        value: "URL",
        description: "sqlite:PATH or postgres://...",
        default: "sqlite:<data-dir>/oneoff.db",
      },
      { name: "data-dir", value: "DIR", description: "State and blobs", default: "./.oneoff" },
      {
        name: "advertise-url",
        value: "URL",
        description:
          "Where the other servers of a PostgreSQL database reach this one (attach relays)",
        default: "the --http address",
      },
      {
        name: "join-token",
        value: "T",
        description: "The token agents join with (visible to local users: prefer the file)",
        default: "<data-dir>/join.token",
        secret: true,
      },
      JOIN_TOKEN_FILE,
      { name: "tls-cert", value: "PEM", description: "Serve the API and dashboard over HTTPS" },
      { name: "tls-key", value: "PEM", description: "The certificate's key" },
      {
        name: "trust-proxy",
        value: "LIST",
        description:
          "Reverse proxies whose X-Forwarded-For names the client: addresses, CIDRs, loopback",
        default: "none",
      },
      {
        name: "join-token-uses",
        value: "N",
        description: "Enrolments the join token allows (counted from its first start)",
      },
      {
        name: "join-token-ttl",
        value: "DURATION",
        description: "How long the join token enrols after its first start",
      },
      {
        name: "auto-approve",
        description:
          "Approve agents the join token enrols at once (weaker: the token is then enough to get runs)",
      },
      {
        name: "audit-key-file",
        value: "PATH",
        description: "Keys that encrypt session recordings",
        default: "<data-dir>/audit.key",
      },
      { name: "max-slug-bytes", value: "N", description: "Largest slug accepted" },
      {
        name: "max-slug-unpacked-bytes",
        value: "N",
        description: "Largest slug content once uncompressed",
        default: "8 GiB",
      },
      {
        name: "max-timeout",
        value: "DURATION",
        description: "Longest --timeout a run may ask for (at most 24d)",
        default: "24h",
      },
      {
        name: "max-idle-timeout",
        value: "DURATION",
        description: "Longest idle timeout an app may set (apps set --idle-timeout)",
        default: "24h",
      },
      {
        name: "max-reattach-grace",
        value: "DURATION",
        description: "Longest reattach grace an app may set (apps set --reattach-grace)",
        default: "1h",
      },
      { name: "max-runs-per-app", value: "N", description: "Live one-offs allowed per app" },
      {
        name: "log-quota-per-run",
        value: "SIZE",
        description:
          "Bytes of a detached run's output stored; beyond, lines are counted and marked, not stored",
        default: "256 MiB",
      },
      {
        name: "app-log-quota",
        value: "SIZE",
        description:
          "Bytes of log lines an app keeps; beyond, its oldest lines are removed (said on its timeline)",
        default: "4 GiB",
      },
      {
        name: "audit-quota-per-session",
        value: "SIZE",
        description:
          "Bytes of an attached session recorded; beyond, the recording stops (marked), the session goes on",
        default: "1 GiB",
      },
      {
        name: "max-artifact-bytes",
        value: "SIZE",
        description:
          "Bytes of files a run may leave in /tmp/downloads to keep as its artifacts; beyond, the rest are refused (said in its end state)",
        default: "1 GiB",
      },
      {
        name: "reattach-grace",
        value: "DURATION",
        description:
          "How long a framed session's process keeps running after its client dropped, waiting for it to reattach; past it, SIGHUP",
        default: "2m",
      },
      {
        name: "log-retention",
        value: "DURATION",
        description: "App log lines older than this are removed",
        default: "30d",
      },
      {
        name: "log-max-lines-per-app",
        value: "N",
        description: "Beyond this many log lines per app, the oldest are removed",
        default: "1000000",
      },
      {
        name: "run-retention",
        value: "DURATION",
        description: "Ended runs are removed this long after their end (the timeline stays)",
        default: "90d",
      },
      {
        name: "audit-retention",
        value: "DURATION",
        description: "Audit recordings are removed this long after they end (>= --run-retention)",
        default: "365d",
      },
      {
        name: "keep-releases",
        value: "N",
        description: "Slugs of older releases than each app's newest N are removed",
        default: "10",
      },
      {
        name: "blob-grace",
        value: "DURATION",
        description: "Unreferenced slugs and uploads are removed once older than this",
        default: "1h",
      },
      {
        name: "to",
        value: "DIR",
        description: "backup: the directory the copy is written to",
        commandLineOnly: true,
      },
      ...CONFIG_FLAGS,
    ],
    examples: [
      "oneoff server --data-dir /var/lib/oneoff",
      "oneoff server --database postgres://oneoff@db/oneoff",
      "oneoff server --config /etc/oneoff/server.json --print-config",
      "oneoff server --tls-cert /etc/oneoff/cert.pem --tls-key /etc/oneoff/key.pem",
      "oneoff server --http 127.0.0.1:8080 --trust-proxy loopback    # behind nginx on this host",
      "oneoff server backup --data-dir /var/lib/oneoff --to /backup/oneoff-$(date +%F)",
    ],
  },
  {
    name: "agent",
    summary: "Run one-offs on this host for a server",
    usage: [
      "agent --server URL [--join-token-file PATH] [--name NAME] [--attach ADDR] [--advertise HOST] [--data-dir DIR] [--sandbox bwrap|runc] [--max-runs N] [--labels K=V,...] [--tls-cert PEM --tls-key PEM] [--metrics ADDR] [--config PATH] [--print-config] | agent --check [--sandbox bwrap|runc] [--max-runs N]",
    ],
    notes: [
      ROLE_CONFIG_NOTE,
      "An https:// server with a certificate no system CA vouches for: DENO_CERT=/path/ca.pem (or deno's --cert) makes the agent and the CLI trust it.",
    ],
    flags: [
      { name: "server", value: "URL", description: "The server to dial (http:// or https://)" },
      {
        name: "join-token",
        value: "T",
        description:
          "Enrols the agent once (visible to local users: prefer the file); then its credential in <data-dir>/agent.credential is used",
        secret: true,
      },
      JOIN_TOKEN_FILE,
      { name: "name", value: "NAME", description: "This agent's name", default: "the host name" },
      { name: "attach", value: "ADDR", description: "The attach port", default: "0.0.0.0:5000" },
      { name: "advertise", value: "HOST", description: "The host clients attach to" },
      {
        name: "data-dir",
        value: "DIR",
        description: "Slug cache and spool",
        default: "./.oneoff-agent",
      },
      SANDBOX,
      { name: "max-runs", value: "N", description: "One-offs at once", default: "20" },
      {
        name: "labels",
        value: "K=V,...",
        description:
          "What apps may require of this agent (apps set --labels), e.g. region=eu,db=local; kept as approved",
      },
      { name: "tls-cert", value: "PEM", description: "Serve the attach port over TLS" },
      { name: "tls-key", value: "PEM", description: "The certificate's key" },
      {
        name: "spool-max-bytes",
        value: "SIZE",
        description:
          "Disk for detached output the server has not stored yet; when full, runs pause (never drop)",
        default: "1GiB",
      },
      {
        name: "drain-timeout",
        value: "DURATION",
        description: "On SIGTERM, how long running one-offs may finish before they are stopped",
        default: "30s",
      },
      {
        name: "stop-grace",
        value: "DURATION",
        description: "Between SIGTERM and SIGKILL when a one-off is stopped",
        default: "10s",
      },
      {
        name: "metrics",
        value: "ADDR",
        description: "Serve Prometheus metrics on GET /metrics here, e.g. 127.0.0.1:9105",
      },
      {
        name: "check",
        description: "Test what the sandbox needs on this host, then exit",
        commandLineOnly: true,
      },
      ...CONFIG_FLAGS,
    ],
    examples: [
      "oneoff agent --server https://oneoff.example.com --join-token-file /etc/oneoff/join.token",
      "ONEOFF_SERVER=https://oneoff.example.com ONEOFF_JOIN_TOKEN_FILE=/etc/oneoff/join.token oneoff agent",
      "oneoff agent --check --sandbox runc",
    ],
  },
];

/** The command named `name`, if there is one. */
export function commandSpec(name: string): CommandSpec | undefined {
  return COMMANDS.find((c) => c.name === name);
}
