import { deepEqual, equal, match, notEqual, ok, rejects } from "node:assert/strict";
import { gzipSync } from "node:zlib";
import { SlugCache, type SlugCacheOptions, SlugRejectedError } from "./slug_cache.ts";
import { type RawEntry, rawTarGz, sha256Hex, streamOf } from "./_tar_test_util.ts";
import { needs } from "../tests/_tools.ts";
import { FakeClock } from "../util/clock.ts";

const MiB = 1024 * 1024;

/** A cache over a fresh temp dir whose fetch serves the slugs given to `add`. */
async function setup(options: Partial<SlugCacheOptions> = {}) {
  const root = await Deno.makeTempDir({ prefix: "slug_cache_test_" });
  const outside = `${root}/outside`;
  await Deno.mkdir(outside);
  const blobs = new Map<string, Uint8Array>();
  let pulled = 0;
  const cacheOptions: SlugCacheOptions = {
    dir: `${root}/cache`,
    maxDiskBytes: 100 * MiB,
    maxExtractBytes: 10 * MiB,
    fetch: (sha256) => {
      const bytes = blobs.get(sha256);
      if (bytes === undefined) return Promise.reject(new Error(`No blob "${sha256}"`));
      const source = streamOf(bytes).getReader();
      return Promise.resolve(
        new ReadableStream<Uint8Array>({
          async pull(controller) {
            const { done, value } = await source.read();
            if (done) return controller.close();
            pulled += value.length;
            controller.enqueue(value);
          },
          cancel: (reason) => source.cancel(reason),
        }),
      );
    },
    ...options,
  };
  return {
    root,
    outside,
    cacheDir: `${root}/cache`,
    cache: new SlugCache(cacheOptions),
    options: cacheOptions,
    pulled: () => pulled,
    add(bytes: Uint8Array): string {
      const sha256 = sha256Hex(bytes);
      blobs.set(sha256, bytes);
      return sha256;
    },
    [Symbol.asyncDispose]: () => Deno.remove(root, { recursive: true }),
  };
}

async function list(dir: string): Promise<string[]> {
  const names: string[] = [];
  for await (const item of Deno.readDir(dir)) names.push(item.name);
  return names.sort();
}

/** Asserts the slug is refused with `reason` and leaves nothing behind, inside or outside. */
async function assertRefused(entries: RawEntry[] | Uint8Array, reason: RegExp) {
  await using t = await setup({ maxExtractBytes: 64 * 1024 });
  const sha256 = t.add(entries instanceof Uint8Array ? entries : rawTarGz(entries));
  await rejects(t.cache.acquire(sha256), (error: unknown) => {
    ok(error instanceof SlugRejectedError, String(error));
    equal(error.sha256, sha256);
    match(error.message, new RegExp(`^Cannot extract slug "${sha256}": `));
    match(error.reason, reason);
    return true;
  });
  deepEqual(await list(t.cacheDir), [".tmp"]);
  deepEqual(await list(`${t.cacheDir}/.tmp`), []);
  deepEqual(await list(t.root), ["cache", "outside"]);
  deepEqual(await list(t.outside), []);
}

const PROCFILE: RawEntry = { path: "./Procfile", body: "web: ./bin/web\n" };

Deno.test("acquire extracts a slug owned by the agent with safe modes", async () => {
  await using t = await setup();
  const sha256 = t.add(rawTarGz([
    { path: "./", type: "dir", mode: 0o777 },
    PROCFILE,
    { path: "bin/", type: "dir", mode: 0o700, uid: 1234 },
    { path: "bin/web", body: "#!/bin/sh\necho hi\n", mode: 0o775, uid: 1234, gid: 99 },
    { path: "data/notes.txt", body: "notes", mode: 0o666 },
    { path: "web", type: "symlink", linkpath: "bin/web" },
    { path: "data/up", type: "symlink", linkpath: "../Procfile" },
    { path: "copy", type: "hardlink", linkpath: "Procfile" },
  ]));
  const lease = await t.cache.acquire(sha256);
  equal(lease.dir, `${t.cacheDir}/${sha256}/root`);
  equal(await Deno.readTextFile(`${lease.dir}/web`), "#!/bin/sh\necho hi\n");
  equal(await Deno.readTextFile(`${lease.dir}/data/up`), "web: ./bin/web\n");
  equal(await Deno.readTextFile(`${lease.dir}/copy`), "web: ./bin/web\n");
  const expected: Record<string, number> = {
    "": 0o755,
    "Procfile": 0o644,
    "bin": 0o755,
    "bin/web": 0o755,
    "data": 0o755,
    "data/notes.txt": 0o644,
  };
  for (const [path, mode] of Object.entries(expected)) {
    const info = await Deno.lstat(`${lease.dir}/${path}`);
    equal((info.mode ?? 0) & 0o7777, mode, `mode of "${path}"`);
    equal(info.uid, Deno.uid(), `owner of "${path}"`);
    equal(info.gid, Deno.gid(), `group of "${path}"`);
  }
  lease.release();
});

Deno.test(needs(["root"], {
  name: "the sandbox uid can read an extracted slug but not write it",
  async fn() {
    await using t = await setup();
    await Deno.chmod(t.root, 0o755);
    const sha256 = t.add(
      rawTarGz([PROCFILE, { path: "bin/run", body: "#!/bin/sh\n", mode: 0o755 }]),
    );
    const lease = await t.cache.acquire(sha256);
    const asNobody = (script: string) =>
      new Deno.Command("setpriv", {
        args: ["--reuid=65534", "--regid=65534", "--clear-groups", "--", "sh", "-c", script],
        stdout: "piped",
        stderr: "null",
      }).output();
    const read = await asNobody(`cat ${lease.dir}/Procfile && test -x ${lease.dir}/bin/run`);
    equal(read.code, 0);
    equal(new TextDecoder().decode(read.stdout), "web: ./bin/web\n");
    const write = await asNobody(`echo x >> ${lease.dir}/Procfile || touch ${lease.dir}/new`);
    notEqual(write.code, 0);
    lease.release();
  },
}));

Deno.test("a later entry for a path replaces an earlier one; large files stream; mtimes kept", async () => {
  await using t = await setup({ maxExtractBytes: 8 * MiB });
  const big = new Uint8Array(3 * MiB).map((_, i) => i % 251);
  const sha256 = t.add(rawTarGz([
    { path: "twice", body: "first" },
    { path: "link", type: "symlink", linkpath: "twice" },
    { path: "big.bin", body: big },
    { path: "twice", body: "second" },
    { path: "link", body: "now a file" },
    { path: "deep/er/file", body: "x" },
    { path: "same", type: "hardlink", linkpath: "big.bin" },
  ]));
  const lease = await t.cache.acquire(sha256);
  equal(await Deno.readTextFile(`${lease.dir}/twice`), "second");
  equal(await Deno.readTextFile(`${lease.dir}/link`), "now a file");
  ok((await Deno.lstat(`${lease.dir}/link`)).isFile);
  deepEqual(await Deno.readFile(`${lease.dir}/big.bin`), big);
  deepEqual(await Deno.readFile(`${lease.dir}/same`), big);
  equal(await Deno.readTextFile(`${lease.dir}/deep/er/file`), "x");
  // The archive's mtime, as `tar xzf` keeps it (Python checks its .pyc files against it).
  equal((await Deno.stat(`${lease.dir}/twice`)).mtime?.getTime(), 1_700_000_000_000);
  lease.release();
});

Deno.test("modes are exact under a umask that takes away group and other bits", async () => {
  await using t = await setup();
  const sha256 = t.add(rawTarGz([
    { path: "bin/run", body: "#!/bin/sh\n", mode: 0o755 },
    { path: "notes", body: "x", mode: 0o644 },
  ]));
  const previous = Deno.umask(0o077);
  try {
    const lease = await t.cache.acquire(sha256);
    const modes = await Promise.all(
      ["", "bin", "bin/run", "notes"].map(async (name) =>
        ((await Deno.stat(`${lease.dir}/${name}`)).mode ?? 0) & 0o7777
      ),
    );
    deepEqual(modes, [0o755, 0o755, 0o755, 0o644]);
    lease.release();
  } finally {
    Deno.umask(previous);
  }
});

Deno.test("acquire refuses a slug whose file stands where a directory must be", async () => {
  await assertRefused(
    [{ path: "a", body: "x" }, { path: "a/b", body: "y" }],
    /^entry "a\/b" could not be extracted/,
  );
});

Deno.test("setuid and setgid bits are stripped, exec bits kept", async () => {
  await using t = await setup();
  const sha256 = t.add(rawTarGz([
    { path: "suid", body: "x", mode: 0o4755 },
    { path: "sgid", body: "x", mode: 0o2711 },
    { path: "sticky/", type: "dir", mode: 0o1777 },
    { path: "plain", body: "x", mode: 0o6644 },
  ]));
  const lease = await t.cache.acquire(sha256);
  const modes = await Promise.all(
    ["suid", "sgid", "sticky", "plain"].map(async (name) =>
      ((await Deno.stat(`${lease.dir}/${name}`)).mode ?? 0) & 0o7777
    ),
  );
  deepEqual(modes, [0o755, 0o755, 0o755, 0o644]);
  lease.release();
});

Deno.test("a second acquire does no download and no extraction", async () => {
  await using t = await setup();
  const sha256 = t.add(rawTarGz([PROCFILE]));
  const first = await t.cache.acquire(sha256);
  const second = await t.cache.acquire(sha256);
  equal(second.dir, first.dir);
  deepEqual(t.cache.stats(), { downloads: 1, extractions: 1 });
  first.release();
  second.release();
});

Deno.test("concurrent acquires of one slug share one download", async () => {
  await using t = await setup();
  const sha256 = t.add(rawTarGz([PROCFILE, { path: "big", body: new Uint8Array(MiB) }]));
  const leases = await Promise.all([1, 2, 3, 4].map(() => t.cache.acquire(sha256)));
  equal(new Set(leases.map((lease) => lease.dir)).size, 1);
  deepEqual(t.cache.stats(), { downloads: 1, extractions: 1 });
  for (const lease of leases) lease.release();
});

Deno.test("a restarted cache reuses the slugs on disk and wipes unfinished work", async () => {
  await using t = await setup();
  const sha256 = t.add(rawTarGz([PROCFILE]));
  (await t.cache.acquire(sha256)).release();
  const half = "f".repeat(64);
  await Deno.mkdir(`${t.cacheDir}/${half}/root`, { recursive: true });
  await Deno.mkdir(`${t.cacheDir}/.tmp/abc/root`, { recursive: true });
  const restarted = new SlugCache(t.options);
  const lease = await restarted.acquire(sha256);
  equal(await Deno.readTextFile(`${lease.dir}/Procfile`), "web: ./bin/web\n");
  deepEqual(restarted.stats(), { downloads: 0, extractions: 0 });
  deepEqual(await list(t.cacheDir), [".tmp", sha256]);
  deepEqual(await list(`${t.cacheDir}/.tmp`), []);
  lease.release();
});

Deno.test("acquire rejects a download whose sha256 does not match and caches nothing", async () => {
  await using t = await setup();
  const good = rawTarGz([PROCFILE]);
  const claimed = t.add(good);
  const other = rawTarGz([{ path: "./Procfile", body: "web: evil\n" }]);
  t.add(other);
  t.options.fetch = () => Promise.resolve(streamOf(other));
  const cache = new SlugCache(t.options);
  await rejects(cache.acquire(claimed), (error: unknown) => {
    ok(error instanceof SlugRejectedError);
    match(error.reason, new RegExp(`the download has sha256 "${sha256Hex(other)}"`));
    return true;
  });
  deepEqual(await list(t.cacheDir), [".tmp"]);
  deepEqual(await list(`${t.cacheDir}/.tmp`), []);
});

Deno.test("acquire passes on a failed download unchanged", async () => {
  await using t = await setup();
  await rejects(t.cache.acquire("0".repeat(64)), /No blob/);
  await rejects(t.cache.acquire("not-a-sha"), /Invalid slug sha256 "not-a-sha"/);
});

Deno.test("eviction removes the least recently used idle slug beyond the budget", async () => {
  await using t = await setup({ maxDiskBytes: 3 * MiB });
  const slug = (name: string) => t.add(rawTarGz([{ path: name, body: new Uint8Array(MiB) }]));
  const [a, b, c] = [slug("a"), slug("b"), slug("c")];
  (await t.cache.acquire(a)).release();
  (await t.cache.acquire(b)).release();
  (await t.cache.acquire(a)).release();
  (await t.cache.acquire(c)).release();
  deepEqual(await list(t.cacheDir), [".tmp", a, c].sort());
  deepEqual(t.cache.stats(), { downloads: 3, extractions: 3 });
  // After a restart the order on disk still says `c` was used last.
  const restarted = new SlugCache(t.options);
  (await restarted.acquire(c)).release();
  (await restarted.acquire(b)).release();
  deepEqual(await list(t.cacheDir), [".tmp", b, c].sort());
});

Deno.test("eviction never removes a slug in use", async () => {
  await using t = await setup({ maxDiskBytes: MiB + MiB / 2 });
  const a = t.add(rawTarGz([{ path: "a", body: new Uint8Array(MiB) }]));
  const b = t.add(rawTarGz([{ path: "b", body: new Uint8Array(MiB) }]));
  const held = await t.cache.acquire(a);
  const other = await t.cache.acquire(b);
  deepEqual(await list(t.cacheDir), [".tmp", a, b].sort());
  other.release();
  other.release(); // a second release must not free someone else's lease
  const again = await t.cache.acquire(a);
  deepEqual(await list(t.cacheDir), [".tmp", a].sort());
  held.release();
  again.release();
});

Deno.test("acquire refuses an entry with ../", async () => {
  await assertRefused([PROCFILE, { path: "../../../../outside/x", body: "x" }], /escapes the root/);
});

Deno.test("acquire refuses an entry with an absolute path", async () => {
  await using probe = await setup();
  await assertRefused([{ path: `${probe.outside}/abs`, body: "x" }], /has an absolute path/);
  deepEqual(await list(probe.outside), []);
});

Deno.test("acquire refuses an absolute symlink", async () => {
  await assertRefused(
    [{ path: "etc", type: "symlink", linkpath: "/etc" }, { path: "etc/x", body: "x" }],
    /symlink "etc" points to the absolute path "\/etc"/,
  );
});

Deno.test("acquire refuses a symlink climbing out through ..", async () => {
  await assertRefused(
    [{ path: "a/up", type: "symlink", linkpath: "../../outside" }],
    /symlink "a\/up" points outside the root/,
  );
});

Deno.test("acquire refuses a symlink with .. after a name", async () => {
  // `here -> .` is harmless, but `here/..` is the root's parent on disk.
  await assertRefused(
    [{ path: "here", type: "symlink", linkpath: "." }, {
      path: "out",
      type: "symlink",
      linkpath: "here/../outside",
    }],
    /symlink "out" has "\.\." after a name/,
  );
});

Deno.test("acquire refuses an entry written through a symlink", async () => {
  await assertRefused(
    [{ path: "sub/", type: "dir" }, { path: "d", type: "symlink", linkpath: "sub" }, {
      path: "d/x",
      body: "x",
    }],
    /entry "d\/x" is inside symlink "d"/,
  );
});

Deno.test("acquire refuses a hard link to outside the root", async () => {
  await assertRefused([{ path: "h", type: "hardlink", linkpath: "../../x" }], /points outside/);
  await assertRefused([{ path: "h", type: "hardlink", linkpath: "/etc/passwd" }], /outside/);
});

Deno.test("acquire refuses a hard link to a symlink", async () => {
  await assertRefused(
    [{ path: "a/s", type: "symlink", linkpath: "../x" }, {
      path: "h",
      type: "hardlink",
      linkpath: "a/s",
    }],
    /hard link "h" points to "a\/s", which is not a regular file/,
  );
});

Deno.test("acquire refuses device nodes and FIFOs", async () => {
  await assertRefused([{ path: "tty", type: "char" }], /entry "tty" is a character device/);
  await assertRefused([{ path: "sda", type: "block" }], /entry "sda" is a block device/);
  await assertRefused([{ path: "pipe", type: "fifo" }], /entry "pipe" is a FIFO/);
});

Deno.test("acquire refuses a slug larger than maxExtractBytes from its header", async () => {
  await assertRefused(
    [PROCFILE, { path: "big", body: new Uint8Array(MiB) }],
    /content is larger than the limit of 65536 bytes/,
  );
});

Deno.test("acquire stops reading a slug as soon as it passes maxExtractBytes", async () => {
  await using t = await setup({ maxExtractBytes: 256 * 1024 });
  // Random data does not compress: download size is close to content size.
  const entries: RawEntry[] = [];
  for (let i = 0; i < 400; i++) {
    entries.push({ path: `f${i}`, body: crypto.getRandomValues(new Uint8Array(16 * 1024)) });
  }
  const sha256 = t.add(rawTarGz(entries));
  await rejects(t.cache.acquire(sha256), /content is larger than the limit/);
  ok(t.pulled() < 2 * MiB, `downloaded ${t.pulled()} bytes of about 6.6 MB`);
  deepEqual(await list(`${t.cacheDir}/.tmp`), []);
});

Deno.test("acquire refuses data that is not gzip, truncated gzip and gzip that is not tar", async () => {
  const good = rawTarGz([PROCFILE, {
    path: "x",
    body: crypto.getRandomValues(new Uint8Array(4096)),
  }]);
  await assertRefused(new TextEncoder().encode("PK\x03\x04 zip?"), /not valid gzip data/);
  await assertRefused(good.slice(0, good.length - 100), /not valid gzip data/);
  const text = new Uint8Array(gzipSync(new TextEncoder().encode("hello ".repeat(500))));
  await assertRefused(text, /not a valid tar archive/);
  await assertRefused(new Uint8Array(gzipSync(good)), /gzip data inside gzip data/);
});

Deno.test("the idle sweep removes slugs unused for longer than maxIdleMs, never one in use", async () => {
  const clock = new FakeClock(Date.now());
  await using t = await setup({ maxIdleMs: 7 * 86_400_000, clock });
  const slug = (name: string) => t.add(rawTarGz([{ path: name, body: new Uint8Array(10) }]));
  const [a, b, c] = [slug("a"), slug("b"), slug("c")];
  (await t.cache.acquire(a)).release();
  const held = await t.cache.acquire(c);
  await clock.advance(6 * 86_400_000);
  (await t.cache.acquire(b)).release();
  equal(await t.cache.sweepIdle(), 0);
  await clock.advance(2 * 86_400_000);
  equal(await t.cache.sweepIdle(), 1, "a: idle for 8 days; c is held");
  deepEqual(await list(t.cacheDir), [".tmp", b, c].sort());
  held.release();
  await clock.advance(7 * 86_400_000);
  equal(await t.cache.sweepIdle(), 2);
  deepEqual(await list(t.cacheDir), [".tmp"]);
});
