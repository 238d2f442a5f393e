/**
 * The long-running roles of the program: `oneoff server`, `oneoff agent`
 * and `oneoff dev` (both in one process, with a demo app).
 * @module
 */
import { commandSpec } from "../cli/_commands.ts";
import { commandHelp, usageHint } from "../cli/_help.ts";
import { UsageError } from "../cli/_io.ts";
import { errorMessage } from "../util/log.ts";

/** Runs `server`, `agent` or `dev`; resolves to the exit code. */
export async function runRole(role: "server" | "agent" | "dev", args: string[]): Promise<number> {
  const spec = commandSpec(role)!;
  // Answered before the role's modules load: help costs no server start-up.
  if (args.includes("--help") || args.includes("-h")) {
    console.log(commandHelp(spec).trimEnd());
    return 0;
  }
  if (args.includes("--version")) {
    const { versionLine } = await import("../cli/mod.ts");
    console.log((await versionLine()).trimEnd());
    return 0;
  }
  try {
    if (role !== "dev" && args.includes("--print-config")) {
      const { printableConfig, roleConfig } = await import("./_config.ts");
      console.log(JSON.stringify(printableConfig(role, await roleConfig(role, args)), null, 2));
      return 0;
    }
    // Each role loads only its own modules: an agent never loads the server.
    if (role === "server") return await (await import("./server.ts")).server(args);
    if (role === "agent") return await (await import("./agent.ts")).agent(args);
    return await (await import("./dev.ts")).dev(args);
  } catch (e) {
    // A bad config file, variable or secret file: one line naming it, nothing started.
    if (e instanceof Error && e.name === "ConfigError") {
      console.error(`oneoff ${role}: ${e.message}`);
      return 2;
    }
    if (e instanceof UsageError) {
      console.error(`oneoff ${role}: ${e.message}\n${usageHint(spec).trimEnd()}`);
      return 2;
    }
    console.error(`oneoff ${role}: ${errorMessage(e)}`);
    return 1;
  }
}
