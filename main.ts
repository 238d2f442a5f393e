/**
 * oneoff: one program for the server, the agent, the CLI and `oneoff dev`.
 * This file only picks the role; each role is imported only when used, so
 * the CLI starts without loading the server.
 * @module
 */

// Not a literal: Deno reads and parses every module a literal dynamic import
// names before running anything (the server's and agent's ~850 files, npm
// packages included), which tripled the CLI's start (`--version` 150 → 30 ms).
// `deno task compile` names it with --include instead.
const ROLES = new URL("./roles/mod.ts", import.meta.url).href;

async function main(args: string[]): Promise<number> {
  const [role, ...rest] = args;
  switch (role) {
    case "server":
    case "agent":
    case "dev": {
      const { runRole } = await import(ROLES);
      return await runRole(role, rest);
    }
    default: {
      const { runCli } = await import("./cli/mod.ts");
      return await runCli(args);
    }
  }
}

if (import.meta.main) {
  Deno.exit(await main(Deno.args));
}
