import { deepEqual, equal, match, ok, rejects } from "node:assert/strict";
import { envName, printableConfig, readSecretFile, roleConfig } from "./_config.ts";

async function tempDir(): Promise<string> {
  return await Deno.makeTempDir({ prefix: "oneoff-config-" });
}

Deno.test("a flag's variable is ONEOFF_ and its name in capitals", () => {
  deepEqual(
    ["join-token", "data-dir", "server"].map(envName),
    ["ONEOFF_JOIN_TOKEN", "ONEOFF_DATA_DIR", "ONEOFF_SERVER"],
  );
});

Deno.test("the command line beats the environment, which beats the config file, which beats the default", async () => {
  const dir = await tempDir();
  try {
    const file = `${dir}/server.json`;
    await Deno.writeTextFile(
      file,
      JSON.stringify({ "data-dir": "/from/file", http: "127.0.0.1:1", "max-runs-per-app": 3 }),
    );
    const env = { ONEOFF_CONFIG: file, ONEOFF_HTTP: "127.0.0.1:2", ONEOFF_DATABASE: "" };
    const c = await roleConfig("server", ["--http", "127.0.0.1:3"], env);
    equal(c.values.http, "127.0.0.1:3");
    equal(c.values["data-dir"], "/from/file");
    equal(c.values["max-runs-per-app"], "3");
    equal(c.values.database, undefined, "an empty variable is unset");
    const fromEnv = await roleConfig("server", [], env);
    equal(fromEnv.values.http, "127.0.0.1:2");
    const shown = printableConfig("server", fromEnv);
    deepEqual(shown.http, { value: "127.0.0.1:2", source: "environment ONEOFF_HTTP" });
    deepEqual(shown["data-dir"], { value: "/from/file", source: `config ${file}` });
    deepEqual(shown["trust-proxy"], { value: "none", source: "default" });
    deepEqual(shown.config, { value: file, source: "environment ONEOFF_CONFIG" });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a config file with an unknown key or a wrong type is refused by name", async () => {
  const dir = await tempDir();
  try {
    const file = `${dir}/server.json`;
    await Deno.writeTextFile(file, JSON.stringify({ "dta-dir": "/x" }));
    await rejects(
      roleConfig("server", ["--config", file], {}),
      { name: "ConfigError", message: `config ${file}: unknown key "dta-dir"` },
    );
    await Deno.writeTextFile(file, JSON.stringify({ http: true }));
    await rejects(roleConfig("server", ["--config", file], {}), /key "http" must be a string/);
    await Deno.writeTextFile(file, JSON.stringify({ config: "/other.json" }));
    await rejects(roleConfig("server", ["--config", file], {}), /unknown key "config"/);
    await Deno.writeTextFile(file, "{ not json");
    await rejects(roleConfig("server", ["--config", file], {}), /not JSON/);
    await rejects(roleConfig("agent", [], { ONEOFF_CONFIG: `${dir}/none.json` }), /cannot read/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a secret comes from its file, one newline trimmed, and is masked in --print-config", async () => {
  const dir = await tempDir();
  try {
    const secret = `${dir}/join.token`;
    await Deno.writeTextFile(secret, "join_s3cret\n", { mode: 0o600 });
    await Deno.chmod(secret, 0o600);
    const c = await roleConfig("agent", ["--server", "http://x"], {
      ONEOFF_JOIN_TOKEN_FILE: secret,
    });
    equal(c.values["join-token"], "join_s3cret");
    deepEqual(c.warnings, []);
    const shown = JSON.stringify(printableConfig("agent", c));
    ok(!shown.includes("s3cret"), shown);
    deepEqual(printableConfig("agent", c)["join-token"], {
      value: "***",
      source: `file ${secret} (environment ONEOFF_JOIN_TOKEN_FILE)`,
    });
    // The command line's token beats the environment's file.
    const flag = await roleConfig("agent", ["--join-token", "join_flag"], {
      ONEOFF_JOIN_TOKEN_FILE: secret,
    });
    equal(flag.values["join-token"], "join_flag");
    match(flag.warnings[0]!, /visible to every local user/);
    await rejects(
      roleConfig("agent", ["--join-token", "a", "--join-token-file", secret], {}),
      /Give --join-token or --join-token-file, not both/,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a secret file readable by others is refused, unless it is a systemd credential", async () => {
  const dir = await tempDir();
  try {
    const secret = `${dir}/join.token`;
    await Deno.writeTextFile(secret, "join_x");
    await Deno.chmod(secret, 0o644);
    await rejects(
      readSecretFile(secret, undefined, "--join-token-file"),
      {
        name: "ConfigError",
        message:
          `--join-token-file ${secret}: must not be readable by others (mode 644; chmod 600 it)`,
      },
    );
    equal(await readSecretFile(secret, dir, "--join-token-file"), "join_x");
    await rejects(readSecretFile(`${dir}/nope`, undefined, "--join-token-file"), /cannot read/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
