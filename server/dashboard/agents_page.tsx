/**
 * Admins only: the agents, with their state, load, sandbox and warnings.
 * @module
 */
// Pages are rendered once on the server: there is no list to reconcile, and
// hono/jsx would print a `key` prop as an HTML attribute.
// deno-lint-ignore-file jsx-key
import type { Handler } from "hono";
import { requireAdmin } from "../auth.ts";
import type { ServerContext } from "../context.ts";
import type { AgentRow } from "../store/mod.ts";
import type { DashEnv } from "./_auth.ts";
import { Heading, render, StateBadge, Time } from "./_layout.tsx";

function AgentsTable(props: { agents: { agent: AgentRow; running: number }[] }) {
  return (
    <div class="table-wrap">
      <table class="table">
        <thead>
          <tr>
            <th>Agent</th>
            <th>State</th>
            <th>Since</th>
            <th class="num">Running / capacity</th>
            <th>Sandbox</th>
            <th>Version</th>
            <th>Attach</th>
            <th>Warnings</th>
          </tr>
        </thead>
        <tbody>
          {props.agents.map(({ agent, running }) => (
            <tr>
              <td class="strong">{agent.name}</td>
              <td>
                <StateBadge state={agent.online ? "online" : "offline"} />
                {agent.trust !== "approved" && (
                  <span class="muted" title="oneoff agents approve NAME">
                    {" "}
                    {agent.trust === "pending" ? "pending approval: no runs" : "revoked"}
                  </span>
                )}
              </td>
              <td>
                <Time at={agent.since} />
              </td>
              <td class="num">
                <span class="load">
                  <meter min={0} max={Math.max(agent.capacity, 1)} value={running}></meter>{" "}
                  {running} / {agent.capacity}
                </span>
              </td>
              <td>{agent.sandbox}</td>
              <td class="mono">{agent.version}</td>
              <td class="mono">
                {`${agent.attach_tls ? "tls" : "tcp"}://${agent.attach_host}:${agent.attach_port}`}
              </td>
              <td>
                {agent.warnings.length === 0
                  ? <span class="muted">none</span>
                  : (
                    <ul class="warnings">
                      {agent.warnings.map((w) => <li>{w}</li>)}
                    </ul>
                  )}
              </td>
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}

/** `GET /agents`. */
export function agentsPage(ctx: ServerContext): Handler<DashEnv> {
  const { store } = ctx;
  return async (c) => {
    const auth = c.get("auth");
    requireAdmin(auth);
    const agents = await Promise.all((await store.listAgents()).map(async (agent) => ({
      agent,
      // What the store says runs there now; the hub's live count is not
      // ours to reach, and the store follows it within a state report.
      running: agent.online
        ? (await store.listRuns({
          agent_id: agent.id,
          states: ["starting", "running"],
          limit: 10_000,
        })).length
        : 0,
    })));
    const online = agents.filter((a) => a.agent.online).length;
    return render(
      c,
      { title: "Agents", auth, csrf: c.get("csrf"), nav: "agents" },
      <>
        <Heading title="Agents" sub={`${online} of ${agents.length} online`} />
        {agents.length > 0 ? <AgentsTable agents={agents} /> : (
          <div class="empty">
            <p>No agent has joined yet.</p>
            <p class="muted">
              Start one with <code>oneoff agent --server URL --join-token T</code>.
            </p>
          </div>
        )}
      </>,
    );
  };
}
