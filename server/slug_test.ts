import { deepEqual, equal, match, ok, rejects, throws } from "node:assert/strict";
import { gzipSync } from "node:zlib";
import * as tar from "tar";
import { inspectSlug, parseProcfile, SlugError, SlugTooLargeError } from "./slug.ts";

async function setup() {
  const dir = await Deno.makeTempDir({ prefix: "slug_test_" });
  await Deno.mkdir(`${dir}/app/bin`, { recursive: true });
  await Deno.writeTextFile(`${dir}/app/bin/web`, "#!/bin/sh\n");
  return {
    dir,
    app: `${dir}/app`,
    slug: `${dir}/slug.tar.gz`,
    /** Packs the app dir with node-tar, as real deploys are made. */
    async pack(files: string[] = ["."]): Promise<string> {
      await tar.c({ gzip: true, cwd: `${dir}/app`, file: `${dir}/slug.tar.gz` }, files);
      return `${dir}/slug.tar.gz`;
    },
    [Symbol.asyncDispose]: () => Deno.remove(dir, { recursive: true }),
  };
}

async function assertSlugError(promise: Promise<unknown>, message: string | RegExp) {
  await rejects(promise, (error: unknown) => {
    ok(error instanceof SlugError, String(error));
    equal(error.name, "SlugError");
    if (typeof message === "string") equal(error.message, message);
    else match(error.message, message);
    return true;
  });
}

Deno.test("inspectSlug returns the process types of a root ./Procfile", async () => {
  await using t = await setup();
  await Deno.writeTextFile(`${t.app}/Procfile`, "web: bin/web --port $PORT\nworker: rake jobs\n");
  const info = await inspectSlug(await t.pack());
  deepEqual(info.processTypes, { web: "bin/web --port $PORT", worker: "rake jobs" });
  equal(info.entries, 4); // ./, ./Procfile, ./bin/, ./bin/web
});

Deno.test("inspectSlug finds a Procfile without the ./ prefix", async () => {
  await using t = await setup();
  await Deno.writeTextFile(`${t.app}/Procfile`, "web: x\n");
  const info = await inspectSlug(await t.pack(["Procfile", "bin"]));
  deepEqual(info.processTypes, { web: "x" });
});

Deno.test("inspectSlug ignores a Procfile below the root", async () => {
  await using t = await setup();
  await Deno.writeTextFile(`${t.app}/bin/Procfile`, "not: at the root\n");
  const info = await inspectSlug(await t.pack());
  deepEqual(info.processTypes, {});
});

Deno.test("inspectSlug refuses data that is not gzip", async () => {
  await using t = await setup();
  await Deno.writeTextFile(t.slug, "PK\x03\x04 a zip file");
  await assertSlugError(inspectSlug(t.slug), "Slug is not gzip data");
  await Deno.writeFile(t.slug, new Uint8Array([0x1f]));
  await assertSlugError(inspectSlug(t.slug), "Slug is not gzip data");
});

Deno.test("inspectSlug refuses gzip data that is not a tar archive", async () => {
  await using t = await setup();
  await Deno.writeFile(t.slug, gzipSync(new TextEncoder().encode("just text\n".repeat(200))));
  await assertSlugError(inspectSlug(t.slug), "Slug is not a tar archive");
});

Deno.test("inspectSlug refuses a slug compressed twice", async () => {
  await using t = await setup();
  await Deno.writeFile(t.slug, gzipSync(await Deno.readFile(await t.pack())));
  await assertSlugError(
    inspectSlug(t.slug),
    "Slug is gzip data inside gzip data, not a tar archive",
  );
});

Deno.test("inspectSlug refuses a truncated slug", async () => {
  await using t = await setup();
  await Deno.writeFile(`${t.app}/data`, crypto.getRandomValues(new Uint8Array(64 * 1024)));
  const bytes = await Deno.readFile(await t.pack());
  await Deno.writeFile(t.slug, bytes.subarray(0, bytes.length - 1000));
  await assertSlugError(
    inspectSlug(t.slug),
    /^Slug is corrupt gzip data \(unexpected end of file\)$/,
  );
});

Deno.test("inspectSlug refuses corrupt gzip data", async () => {
  await using t = await setup();
  await Deno.writeFile(`${t.app}/data`, crypto.getRandomValues(new Uint8Array(64 * 1024)));
  const bytes = await Deno.readFile(await t.pack());
  const middle = bytes.length >> 1;
  bytes[middle] = (bytes[middle] ?? 0) ^ 0xff;
  await Deno.writeFile(t.slug, bytes);
  await assertSlugError(
    inspectSlug(t.slug),
    /^Slug is (corrupt gzip data|not a valid tar archive)/,
  );
});

Deno.test("inspectSlug refuses a slug larger than maxBytes uncompressed", async () => {
  await using t = await setup();
  await Deno.writeFile(`${t.app}/zeros`, new Uint8Array(1024 * 1024));
  const slug = await t.pack();
  await rejects(inspectSlug(slug, { maxBytes: 64 * 1024 }), (error: unknown) => {
    ok(error instanceof SlugTooLargeError, String(error));
    equal(error.message, "Slug is larger than 65536 bytes uncompressed");
    return true;
  });
  equal((await inspectSlug(slug, { maxBytes: 2 * 1024 * 1024 })).entries, 4);
});

Deno.test("inspectSlug refuses a Procfile over 64 KiB or that is not a file", async () => {
  await using t = await setup();
  await Deno.writeTextFile(`${t.app}/Procfile`, `web: ${"x".repeat(64 * 1024)}\n`);
  await assertSlugError(inspectSlug(await t.pack()), "Slug has a Procfile larger than 64 KiB");
  await Deno.remove(`${t.app}/Procfile`);
  await Deno.mkdir(`${t.app}/Procfile`);
  await assertSlugError(
    inspectSlug(await t.pack()),
    "Slug has a Procfile that is not a regular file",
  );
});

Deno.test("inspectSlug reports a malformed Procfile line by number", async () => {
  await using t = await setup();
  await Deno.writeTextFile(`${t.app}/Procfile`, "# processes\nweb: x\n\nworker rake\n");
  await assertSlugError(
    inspectSlug(await t.pack()),
    'Procfile line 4 is not "name: command": "worker rake"',
  );
  await Deno.writeFile(`${t.app}/Procfile`, new Uint8Array([0x77, 0x3a, 0x20, 0xff, 0xfe]));
  await assertSlugError(inspectSlug(await t.pack()), "Slug has a Procfile that is not UTF-8 text");
});

Deno.test("parseProcfile skips comments and blank lines and accepts CRLF", () => {
  const text =
    "\uFEFF# comment\r\nweb:   bundle exec puma  \r\n\r\n  # indented comment\nrelease: ./migrate\n";
  deepEqual(parseProcfile(text), { web: "bundle exec puma", release: "./migrate" });
  deepEqual(parseProcfile(""), {});
});

Deno.test("parseProcfile refuses bad names, empty commands and repeats", () => {
  throws(() => parseProcfile("web.1: x"), /Procfile line 1 is not "name: command"/);
  throws(() => parseProcfile("a: x\nweb:\n"), /Procfile line 2 has no command for "web"/);
  throws(() => parseProcfile("web: a\nweb: b"), /Procfile line 2 repeats "web"/);
  throws(() => parseProcfile(": x"), SlugError);
});

Deno.test("parseProcfile keeps a type named __proto__ as a plain key", () => {
  const types = parseProcfile("__proto__: x\n");
  equal(Object.getPrototypeOf(types), Object.prototype);
  deepEqual(Object.keys(types), ["__proto__"]);
});

Deno.test("inspectSlug refuses what agents would refuse: escaping symlinks and special files", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const cases: [string, (src: string) => Promise<void>, RegExp][] = [
      [
        "abs",
        (src) => Deno.symlink("/etc/shadow", `${src}/leak`),
        /symlink "\.\/leak" points to the absolute path/,
      ],
      [
        "up",
        (src) => Deno.symlink("../../secret", `${src}/up`),
        /symlink "\.\/up" points outside the root/,
      ],
      ["fifo", async (src) => {
        await new Deno.Command("mkfifo", { args: [`${src}/pipe`] }).output();
      }, /entry "\.\/pipe" is a FIFO/],
    ];
    for (const [name, make, reason] of cases) {
      const src = `${dir}/${name}`;
      await Deno.mkdir(src);
      await make(src);
      const archive = `${dir}/${name}.tar.gz`;
      const out = await new Deno.Command("tar", { args: ["-czf", archive, "-C", src, "."] })
        .output();
      ok(out.success);
      await rejects(inspectSlug(archive), (error: unknown) => {
        ok(error instanceof SlugError);
        match(error.message, /^Slug is refused: /);
        match(error.message, reason);
        return true;
      });
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
