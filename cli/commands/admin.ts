/**
 * `login`, `agents` and `tokens`.
 * @module
 */
import type {
  AgentsReply,
  CreateTokenBody,
  Role,
  TokenCreatedReply,
  WhoamiReply,
} from "../../protocol/mod.ts";
import { parse } from "../_args.ts";
import { age, out, table, UsageError } from "../_io.ts";
import { Client, configPath, writeConfig } from "../client.ts";

/** `oneoff login --server URL --token T`: checks, then stores them (0600). */
export async function login(args: string[]): Promise<void> {
  const { values } = parse(args, { server: { type: "string" }, token: { type: "string" } });
  const server = values.server ?? Deno.env.get("ONEOFF_SERVER");
  const token = values.token ?? Deno.env.get("ONEOFF_TOKEN");
  if (!server || !token) throw new UsageError("login needs --server URL and --token T");
  const who = await new Client(server, token).request<WhoamiReply>("GET", "/whoami");
  await writeConfig({ server, token });
  out(`Logged in to ${server} as ${who.name} (${who.role}); saved in ${configPath()}\n`);
}

/** `oneoff agents [--json]`. */
export async function agents(args: string[]): Promise<void> {
  const { values } = parse(args, { json: { type: "boolean" } });
  const client = await Client.load();
  const { agents } = await client.request<AgentsReply>("GET", "/agents");
  if (values.json) return out(JSON.stringify(agents, null, 2) + "\n");
  if (agents.length === 0) return out("No agents have joined yet\n");
  out(table(
    ["NAME", "STATE", "SINCE", "RUNNING", "CAPACITY", "SANDBOX", "ATTACH", "VERSION"],
    agents.map((a) => [
      a.name,
      a.state,
      age(Date.now() - Date.parse(a.since)),
      String(a.running),
      String(a.capacity),
      a.sandbox,
      a.attach,
      a.version,
    ]),
  ));
  for (const a of agents) for (const w of a.warnings) out(`warning (${a.name}): ${w}\n`);
}

/** `oneoff tokens create --role member --app APP [--name N]`. */
export async function tokens(args: string[]): Promise<void> {
  const { values, positionals } = parse(args, {
    role: { type: "string" },
    app: { type: "string", short: "a", multiple: true },
    name: { type: "string" },
  });
  if (positionals[0] !== "create") {
    throw new UsageError("Use: oneoff tokens create --role member --app APP");
  }
  const client = await Client.load();
  const body: CreateTokenBody = {
    // The server says which roles exist, and words the refusal of others.
    role: (values.role ?? "member") as Role,
    apps: values.app ?? [],
    ...(values.name ? { name: values.name } : {}),
  };
  const res = await client.request<TokenCreatedReply>("POST", "/tokens", body);
  out(res.token + "\n");
}
