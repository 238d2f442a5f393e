/**
 * `login`, `logout`, `whoami`, `agents` and `tokens`.
 * @module
 */
import type {
  AgentReply,
  AgentsReply,
  CreateTokenBody,
  JoinTokenReply,
  Role,
  RotateJoinTokenBody,
  TokenCreatedReply,
  TokenReply,
  TokensReply,
  WhoamiReply,
} from "../../protocol/mod.ts";
import { labelsText } from "../../protocol/mod.ts";
import { parse } from "../_args.ts";
import { age, out, parseDuration, table, UsageError } from "../_io.ts";
import { Client, configPath, writeConfig } from "../client.ts";

function noArguments(positionals: string[]): void {
  if (positionals.length > 0) throw new UsageError(`Unexpected argument "${positionals[0]}"`);
}

/** `oneoff login --server URL --token T`: checks, then stores them (0600). */
export async function login(args: string[]): Promise<void> {
  const parsed = parse("login", args);
  noArguments(parsed.positionals);
  const server = parsed.string("server") ?? Deno.env.get("ONEOFF_SERVER");
  const token = parsed.string("token") ?? Deno.env.get("ONEOFF_TOKEN");
  if (!server || !token) throw new UsageError("login needs --server URL and --token T");
  const who = await new Client(server, token).request<WhoamiReply>("GET", "/whoami");
  await writeConfig({ server, token });
  out(`Logged in to ${server} as ${who.name} (${who.role}); saved in ${configPath()}\n`);
}

/** `oneoff logout`: removes the stored login. */
export async function logout(args: string[]): Promise<void> {
  noArguments(parse("logout", args).positionals);
  const path = configPath();
  let removed = true;
  try {
    await Deno.remove(path);
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
    removed = false;
  }
  out(removed ? `Logged out: removed ${path}\n` : `Not logged in: no ${path}\n`);
  if (Deno.env.get("ONEOFF_TOKEN")) out("ONEOFF_TOKEN is still set in this shell: unset it too\n");
}

/** `oneoff whoami [--json]`. */
export async function whoami(args: string[]): Promise<void> {
  const parsed = parse("whoami", args);
  noArguments(parsed.positionals);
  const client = await Client.load();
  const who = await client.request<WhoamiReply>("GET", "/whoami");
  if (parsed.flag("json")) return out(JSON.stringify({ ...who, server: client.server }) + "\n");
  const apps = who.role === "admin" ? "every app" : `apps ${who.apps.join(", ")}`;
  out(`${who.name} (${who.role}, ${apps}) on ${client.server}\n`);
}

/** `oneoff agents [list] [--json] | approve NAME | revoke NAME | join-token rotate`. */
export async function agents(args: string[]): Promise<void> {
  const parsed = parse("agents", args);
  const [sub = "list", ref, ...rest] = parsed.positionals;
  if (sub === "approve" || sub === "revoke") {
    if (!ref) throw new UsageError(`agents ${sub} needs the agent's NAME (see oneoff agents)`);
    noArguments(rest);
    const client = await Client.load();
    const { agent } = await client.request<AgentReply>(
      "POST",
      `/agents/${encodeURIComponent(ref)}/${sub}`,
      {},
    );
    out(
      sub === "approve"
        ? `Approved agent "${agent.name}": it takes runs now\n`
        : `Revoked agent "${agent.name}": its channel is closed and its credential no longer works\n`,
    );
    return;
  }
  if (sub === "join-token") {
    if (ref !== "rotate") throw new UsageError("Which one? agents join-token rotate");
    noArguments(rest);
    const body: RotateJoinTokenBody = {};
    const uses = parsed.string("uses");
    if (uses !== undefined) {
      const n = Number(uses);
      if (!Number.isInteger(n) || n < 1) {
        throw new UsageError(`Invalid --uses "${uses}": give a positive integer`);
      }
      body.uses = n;
    }
    const ttl = parsed.string("ttl");
    if (ttl !== undefined) body.ttl_ms = parseDuration(ttl);
    const client = await Client.load();
    const reply = await client.request<JoinTokenReply>("POST", "/agents/join-token", body);
    if (parsed.flag("json")) return out(JSON.stringify(reply) + "\n");
    out(reply.token + "\n");
    return;
  }
  if (sub !== "list") throw new UsageError(`Unknown agents command "${sub}"`);
  noArguments(parsed.positionals.slice(1));
  const client = await Client.load();
  const { agents } = await client.request<AgentsReply>("GET", "/agents");
  if (parsed.flag("json")) return out(JSON.stringify(agents, null, 2) + "\n");
  if (agents.length === 0) return out("No agents have joined yet\n");
  out(table(
    [
      "NAME",
      "STATE",
      "TRUST",
      "SINCE",
      "RUNNING",
      "CAPACITY",
      "SANDBOX",
      "ATTACH",
      "LABELS",
      "VERSION",
    ],
    agents.map((a) => [
      a.name,
      a.state,
      a.trust,
      age(Date.now() - Date.parse(a.since)),
      String(a.running),
      String(a.capacity),
      a.sandbox,
      a.attach,
      a.labels && Object.keys(a.labels).length ? labelsText(a.labels) : "-",
      a.version,
    ]),
  ));
  for (const a of agents) for (const w of a.warnings) out(`warning (${a.name}): ${w}\n`);
  const pending = agents.filter((a) => a.trust === "pending").map((a) => a.name);
  if (pending.length > 0) {
    out(`Pending approval (no run until then): oneoff agents approve ${pending.join(" | ")}\n`);
  }
}

/** `oneoff tokens create|list|revoke`. */
export async function tokens(args: string[]): Promise<void> {
  const parsed = parse("tokens", args);
  const [sub, ref, ...rest] = parsed.positionals;
  if (sub === "create" || sub === "list") noArguments(parsed.positionals.slice(1));
  if (sub === "revoke") {
    if (!ref) throw new UsageError("tokens revoke needs the token's ID or NAME (see tokens list)");
    noArguments(rest);
  }
  if (sub !== "create" && sub !== "list" && sub !== "revoke") {
    throw new UsageError(
      sub === undefined ? "Which one? create, list or revoke" : `Unknown tokens command "${sub}"`,
    );
  }
  const client = await Client.load();
  if (sub === "list") {
    const { tokens } = await client.request<TokensReply>("GET", "/tokens");
    if (parsed.flag("json")) return out(JSON.stringify(tokens, null, 2) + "\n");
    out(table(
      ["ID", "NAME", "ROLE", "APPS", "CREATED"],
      tokens.map((t) => [String(t.id), t.name, t.role, t.apps.join(",") || "-", t.created_at]),
    ));
    return;
  }
  if (sub === "revoke") {
    const { token } = await client.request<TokenReply>(
      "DELETE",
      `/tokens/${encodeURIComponent(ref!)}`,
    );
    out(`Revoked ${token.role} token "${token.name}" (id ${token.id}): it no longer works\n`);
    return;
  }
  const body: CreateTokenBody = {
    // The server says which roles exist, and words the refusal of others.
    role: (parsed.string("role") ?? "member") as Role,
    apps: parsed.list("app"),
    ...(parsed.string("name") ? { name: parsed.string("name")! } : {}),
  };
  const res = await client.request<TokenCreatedReply>("POST", "/tokens", body);
  out(res.token + "\n");
}
