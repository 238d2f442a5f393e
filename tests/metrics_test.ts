import { deepEqual, match, ok } from "node:assert/strict";
import { AgentMetrics, serveMetrics } from "../agent/metrics.ts";
import type { RunInfo } from "../protocol/mod.ts";
import { family, parsePrometheus, value } from "./_prometheus.ts";
import { startSystem } from "./_system.ts";
import { needs } from "./_tools.ts";
import { waitFor } from "./_wait.ts";

const MAIN = new URL("../main.ts", import.meta.url).pathname;

async function refusedAttach(port: number): Promise<string> {
  using conn = await Deno.connect({ hostname: "127.0.0.1", port });
  await conn.write(new TextEncoder().encode("not-a-secret\n"));
  const buf = new Uint8Array(256);
  const n = await conn.read(buf);
  return new TextDecoder().decode(buf.subarray(0, n ?? 0));
}

Deno.test(needs(["prometheus_parser"], {
  name: "server and agent metrics count a detached run's lines and a refused attach, " +
    "naming no app, env key or command",
  async fn() {
    const agentMetrics = new AgentMetrics();
    await using sys = await startSystem({ agentMetrics });
    const served = await serveMetrics({ hostname: "127.0.0.1", port: 0 }, agentMetrics);
    try {
      const set = await sys.cli(["env", "set", "-a", "demo", "METRICS_HIDDEN_KEY=v"]);
      deepEqual(set.code, 0, set.stderr);
      const command = "seq 1 250; echo metrics-hidden-command >/dev/null";
      const started = await sys.cli(["run", "-d", "-a", "demo", "--", command]);
      deepEqual(started.code, 0, started.stderr);
      const { run } = await sys.api<{ run: RunInfo }>("GET", "/apps/demo/runs/one-off-1?wait=30");
      deepEqual(run.state, "exited");
      match(await refusedAttach(sys.attachPort), /^oneoff: unknown secret/);

      const scrape = async () => {
        const text = await (await fetch(`${sys.url}/metrics`)).text();
        return { text, families: await parsePrometheus(text) };
      };
      // Each line once: the 250 of seq, none twice.
      const { text: serverText, families: server } = await waitFor(async () => {
        const got = await scrape();
        const ingested = family(got.families, "oneoff_log_lines_ingested");
        return value(ingested, "oneoff_log_lines_ingested_total") >= 250 && got;
      }, { message: "the run's 250 lines to be counted" });
      const ingested = family(server, "oneoff_log_lines_ingested");
      deepEqual(value(ingested, "oneoff_log_lines_ingested_total"), 250);
      const runs = family(server, "oneoff_runs");
      deepEqual(value(runs, "oneoff_runs", { state: "exited" }), 1);
      deepEqual(value(family(server, "oneoff_agents_online"), "oneoff_agents_online"), 1);
      const start = family(server, "oneoff_run_start_seconds");
      deepEqual(value(start, "oneoff_run_start_seconds_count"), 1);
      const store = family(server, "oneoff_store_query_duration_seconds");
      ok(value(store, "oneoff_store_query_duration_seconds_count", { method: "appendLogs" }) >= 1);

      const agentRes = await fetch(`http://127.0.0.1:${served.port}/metrics`);
      deepEqual(agentRes.status, 200);
      const agentText = await agentRes.text();
      const agent = await parsePrometheus(agentText);
      const handshakes = family(agent, "oneoff_agent_attach_handshakes");
      deepEqual(
        value(handshakes, "oneoff_agent_attach_handshakes_total", {
          outcome: "refused",
          reason: "unknown",
        }),
        1,
      );
      const shipped = family(agent, "oneoff_agent_log_lines_shipped");
      ok(value(shipped, "oneoff_agent_log_lines_shipped_total") >= 250);
      const spawn = family(agent, "oneoff_agent_sandbox_spawn_seconds");
      deepEqual(
        value(spawn, "oneoff_agent_sandbox_spawn_seconds_count", { sandbox: "bwrap" }),
        1,
      );
      deepEqual(value(family(agent, "oneoff_agent_runs_active"), "oneoff_agent_runs_active"), 0);
      ok(
        value(family(agent, "oneoff_agent_slug_cache_bytes"), "oneoff_agent_slug_cache_bytes") > 0,
      );
      family(agent, "oneoff_agent_spool_bytes");

      const ready = await (await fetch(`${sys.url}/readyz`)).text();
      for (const text of [serverText, agentText, ready]) {
        for (const secret of ["demo", "METRICS_HIDDEN_KEY", "metrics-hidden-command", "seq 1"]) {
          ok(!text.includes(secret), `"${secret}" in ${text.slice(0, 200)}`);
        }
      }
    } finally {
      await served.close();
    }
  },
}));

Deno.test(needs(["prometheus_parser"], {
  name: "oneoff agent --metrics serves its metrics, and server and agent --version answer",
  async fn() {
    await using sys = await startSystem({ demo: false });
    const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    const port = (listener.addr as Deno.NetAddr).port;
    listener.close();
    const dir = await Deno.makeTempDir({ prefix: "oneoff-metrics-agent-" });
    const child = new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "-A",
        "--quiet",
        MAIN,
        "agent",
        "--server",
        sys.url,
        "--join-token",
        sys.server.joinToken,
        "--name",
        "metrics-agent",
        "--attach",
        "127.0.0.1:0",
        "--data-dir",
        dir,
        "--metrics",
        `127.0.0.1:${port}`,
      ],
      env: { ONEOFF_LOG: "warn" },
      stdout: "null",
      stderr: "null",
    }).spawn();
    try {
      const text = await waitFor(async () => {
        const res = await fetch(`http://127.0.0.1:${port}/metrics`).catch(() => null);
        return res?.ok ? await res.text() : undefined;
      }, { message: "the agent's metrics listener" });
      const families = await parsePrometheus(text);
      family(families, "oneoff_agent_attach_handshakes");
      family(families, "oneoff_agent_runs_active");
      const other = await fetch(`http://127.0.0.1:${port}/`);
      await other.body?.cancel();
      deepEqual(other.status, 404);
    } finally {
      child.kill("SIGTERM");
      await child.status;
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    }
    for (const role of ["server", "agent"]) {
      const out = await new Deno.Command(Deno.execPath(), {
        args: ["run", "-A", "--quiet", MAIN, role, "--version"],
        stdout: "piped",
      }).output();
      deepEqual(out.code, 0);
      match(new TextDecoder().decode(out.stdout), /^oneoff \d+\.\d+/);
    }
  },
}));
