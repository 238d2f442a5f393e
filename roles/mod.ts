/**
 * The long-running roles of the program: `oneoff server`, `oneoff agent`
 * and `oneoff dev` (both in one process, with a demo app).
 * @module
 */
import { errorMessage } from "../util/log.ts";

/** Runs `server`, `agent` or `dev`; resolves to the exit code. */
export async function runRole(role: "server" | "agent" | "dev", args: string[]): Promise<number> {
  try {
    // Each role loads only its own modules: an agent never loads the server.
    if (role === "server") return await (await import("./server.ts")).server(args);
    if (role === "agent") return await (await import("./agent.ts")).agent(args);
    return await (await import("./dev.ts")).dev(args);
  } catch (e) {
    console.error(`oneoff ${role}: ${errorMessage(e)}`);
    return e instanceof Error && e.message.includes("Usage:") ? 2 : 1;
  }
}
