/**
 * A stand-in agent for the die-with-parent test: it starts one sandbox and
 * waits to be SIGKILLed. Usage: KIND WORK_DIR SLUG_DIR RUN_ID COMMAND.
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
  network: "host",
});
await process.status;
