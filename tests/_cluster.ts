/**
 * Several real `oneoff server` processes on one PostgreSQL schema of their
 * own, behind a real haproxy on loopback (round-robin, no stickiness,
 * health checks every 200 ms): what tests/cluster_test.ts and the bench's
 * `cluster` case start.
 * @module
 */
import postgres from "postgres";
import { freePort, Proc, startServer } from "./_processes.ts";
import { tool } from "./_tools.ts";
import { waitFor } from "./_wait.ts";

/** The keys each server must share (docs/install.md "Several servers"). */
export const SHARED_KEY_FILES = ["audit.key", "session.key", "attach.key"];

/** One server of a {@link Cluster}. */
export interface Member {
  proc: Proc;
  port: number;
  url: string;
  dir: string;
  /** Its id in the cluster tables (printed when it listens). */
  id: string;
}

/** Servers, their load balancer and their database. */
export interface TestCluster extends AsyncDisposable {
  members: Member[];
  /** The load balancer's URL: what agents and CLIs use. */
  url: string;
  /** The database URL the servers were given. */
  database: string;
  /** A connection to the servers' schema. */
  sql: postgres.Sql;
  token: string;
  /** CLI environment for a server's URL (the load balancer's by default). */
  env(url?: string): Record<string, string>;
  /** The member that holds the named agent's channel now, if any. */
  holder(agentName: string): Promise<Member | undefined>;
  /** Starts one more server on the same database (its keys copied unless told otherwise). */
  add(options?: { copyKeys?: boolean }): Promise<Member>;
}

/** A schema of its own on `pgUrl`, `count` servers on it, haproxy in front. */
export async function startCluster(
  pgUrl: string,
  count: number,
  options: { serverFlags?: string[] } = {},
): Promise<TestCluster> {
  const schema = `cluster_${crypto.randomUUID().replaceAll("-", "").slice(0, 12)}`;
  const admin = postgres(pgUrl, { max: 1, onnotice: () => {} });
  await admin.unsafe(`create schema ${schema}`);
  await admin.end();
  const dbUrl = new URL(pgUrl);
  dbUrl.searchParams.set("search_path", schema);
  const database = dbUrl.href;
  const sql = postgres(database, { max: 2, onnotice: () => {} });
  const root = await Deno.makeTempDir({ prefix: "oneoff-cluster-" });
  const members: Member[] = [];
  let haproxy: Proc | Deno.ChildProcess | undefined;

  async function add(addOptions: { copyKeys?: boolean } = {}): Promise<Member> {
    const dir = `${root}/server-${members.length + 1}`;
    await Deno.mkdir(dir, { recursive: true });
    if (members.length > 0 && addOptions.copyKeys !== false) {
      for (const name of SHARED_KEY_FILES) {
        await Deno.copyFile(`${members[0]!.dir}/${name}`, `${dir}/${name}`);
        await Deno.chmod(`${dir}/${name}`, 0o600);
      }
    }
    const port = freePort();
    const proc = await startServer(dir, port, [
      "--database",
      database,
      "--trust-proxy",
      "loopback",
      ...(options.serverFlags ?? []),
    ]);
    const id = /"server listening".*?"server":"([0-9a-f-]+)"/.exec(proc.stderr)?.[1];
    if (!id) throw new Error(`No server id in its log: ${proc.stderr}`);
    const member = { proc, port, url: `http://127.0.0.1:${port}`, dir, id };
    members.push(member);
    return member;
  }

  try {
    for (let i = 0; i < count; i++) await add();
    const lbPort = freePort();
    const config = [
      "global",
      "  maxconn 4096",
      "defaults",
      "  mode http",
      "  timeout connect 1s",
      "  timeout client 120s",
      "  timeout server 120s",
      "  timeout tunnel 1h",
      "  retries 3",
      "  option redispatch 1",
      "listen oneoff",
      `  bind 127.0.0.1:${lbPort}`,
      "  balance roundrobin",
      "  option httpchk GET /healthz",
      "  default-server inter 200ms fall 1 rise 2",
      ...members.map((m, i) => `  server s${i + 1} 127.0.0.1:${m.port} check`),
    ].join("\n") + "\n";
    await Deno.writeTextFile(`${root}/haproxy.cfg`, config);
    const child = new Deno.Command(tool("haproxy"), {
      args: ["-db", "-f", `${root}/haproxy.cfg`],
      stdin: "null",
      stdout: "null",
      stderr: "null",
    }).spawn();
    haproxy = child;
    const url = `http://127.0.0.1:${lbPort}`;
    await waitFor(async () => {
      try {
        return (await fetch(`${url}/healthz`)).ok;
      } catch {
        return false;
      }
    }, { message: "haproxy to answer" });
    const token = (await Deno.readTextFile(`${members[0]!.dir}/admin.token`)).trim();
    return {
      members,
      url,
      database,
      sql,
      token,
      env: (at = url) => ({ ONEOFF_SERVER: at, ONEOFF_TOKEN: token, HOME: root, NO_COLOR: "1" }),
      async holder(agentName) {
        const [row] = await sql<{ server_id: string }[]>`
          select p.server_id from cluster_presence p join agents a on a.id = p.agent_id
          where a.name = ${agentName}`;
        return members.find((m) => m.id === row?.server_id);
      },
      add,
      async [Symbol.asyncDispose]() {
        try {
          child.kill("SIGKILL");
        } catch { /* ended */ }
        await child.status;
        for (const m of members) await m.proc[Symbol.asyncDispose]();
        await sql.end({ timeout: 1 });
        const drop = postgres(pgUrl, { max: 1, onnotice: () => {} });
        await drop.unsafe(`drop schema ${schema} cascade`).catch(() => {});
        await drop.end();
        await Deno.remove(root, { recursive: true }).catch(() => {});
      },
    };
  } catch (err) {
    if (haproxy && "kill" in haproxy) {
      try {
        haproxy.kill("SIGKILL");
      } catch { /* ended */ }
    }
    for (const m of members) await m.proc[Symbol.asyncDispose]();
    await sql.end({ timeout: 1 });
    throw err;
  }
}
