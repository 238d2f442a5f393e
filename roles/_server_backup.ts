/**
 * `oneoff server backup --to DIR`: what it wrote, and what is left to copy.
 * @module
 */
import { UsageError } from "../cli/_io.ts";
import { backup as takeBackup } from "../server/backup.ts";
import { flags } from "./_flags.ts";

/** Backs up the server's database and key files; prints where they went. */
export async function backup(args: string[]): Promise<number> {
  const v = flags("server", args);
  if (!v.to) throw new UsageError("Give the backup's directory: server backup --to DIR");
  const dataDir = v["data-dir"] ?? "./.oneoff";
  const result = await takeBackup(v.to, {
    dataDir,
    ...(v.database ? { database: v.database } : {}),
    ...(v["audit-key-file"] ? { auditKeyFile: v["audit-key-file"] } : {}),
  });
  console.log(`Database: ${result.database}`);
  for (const file of result.files) console.log(`Key file: ${file}`);
  if (result.blobs === null) {
    console.log("Blobs: in the database copy (each server's data dir only caches them)");
  } else {
    console.log(
      `Blobs (content-addressed, never rewritten): copy ${result.blobs} with e.g. ` +
        `rsync -a ${result.blobs}/ ${v.to}/blobs/`,
    );
  }
  return 0;
}
