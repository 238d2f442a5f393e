/**
 * Which part of the server handles what an agent says: run placement and
 * state to the run engine, log and audit batches to the ingest.
 * @module
 */
import { isTerminal } from "../protocol/mod.ts";
import type { AgentEvents } from "./agent_hub.ts";
import type { Ingest } from "./ingest.ts";
import type { RunEngine } from "./run_engine.ts";
import type { Watchers } from "./watch.ts";

/** The hub's events, each sent to the room that handles it. */
export function routeAgentEvents(
  engine: RunEngine,
  ingest: Ingest,
  watchers?: Watchers,
): AgentEvents {
  return {
    async message(agent, msg) {
      switch (msg.type) {
        case "attach_ready":
          return engine.attachReady(agent, msg);
        case "run_state":
          if (await engine.runState(agent, msg) && isTerminal(msg.state)) {
            ingest.ended(msg.runId, msg.lines);
          }
          return;
        case "logs":
          return await ingest.logs(agent, msg);
        case "audit":
          return await ingest.audit(agent, msg);
        case "session_event":
          return await engine.sessionEvent(agent, msg);
        case "draining":
          agent.draining = true;
          return;
        default:
          return;
      }
    },
    async joined(agent, running, ended) {
      // A run watched while its agent was away goes on being watched.
      watchers?.rejoined(agent.id, running);
      for (const end of await engine.joined(agent, running, ended)) {
        ingest.ended(end.runId, end.lines);
      }
    },
    approved() {
      return engine.schedule();
    },
    left(agent) {
      ingest.left(agent);
      return engine.left(agent);
    },
  };
}
