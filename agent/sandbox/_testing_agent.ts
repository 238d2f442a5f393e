/**
 * A stand-in agent for the die-with-parent and inherited-descriptor tests:
 * it starts one sandbox (network isolated, the default), copies its output
 * to its own and exits with its code, unless SIGKILLed first. Usage: KIND
 * WORK_DIR SLUG_DIR RUN_ID COMMAND.
 * @module
 */
import { createSandbox } from "./mod.ts";
import { PATH, TEST_LIMITS } from "./_testing.ts";

const [kind, workDir, slugDir, runId, command] = Deno.args;
if (kind !== "bwrap" && kind !== "runc" || !workDir || !slugDir || !runId || !command) {
  throw new Error("Usage: _testing_agent.ts bwrap|runc WORK_DIR SLUG_DIR RUN_ID COMMAND");
}
const sandbox = await createSandbox(kind, { workDir });
const process = await sandbox.spawn({
  runId,
  slugDir,
  command,
  env: { PATH },
  limits: TEST_LIMITS,
  network: "isolated",
});
await process.stdin.close();
await Promise.all([
  process.stdout.pipeTo(Deno.stdout.writable, { preventClose: true }),
  process.stderr?.pipeTo(Deno.stderr.writable, { preventClose: true }),
]);
Deno.exit((await process.status).code);
