/**
 * oneoff: one program for the server, the agent, the CLI and `oneoff dev`.
 * This file only picks the role; each role is imported only when used, so
 * the CLI starts without loading the server.
 * @module
 */

async function main(args: string[]): Promise<number> {
  const [role, ...rest] = args;
  switch (role) {
    case "server":
    case "agent":
    case "dev": {
      const { runRole } = await import("./roles/mod.ts");
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
