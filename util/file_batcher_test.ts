import { deepEqual } from "node:assert/strict";
import { streamToFile } from "./file_batcher.ts";

Deno.test("a stream of many small chunks lands in the file whole and in order", async () => {
  const path = await Deno.makeTempFile();
  try {
    const chunks = Array.from({ length: 3000 }, (_, i) => new Uint8Array(1000).fill(i % 251));
    {
      using file = await Deno.open(path, { write: true });
      await streamToFile(ReadableStream.from(chunks), file);
    }
    const data = await Deno.readFile(path);
    deepEqual(data.length, 3_000_000);
    for (let i = 0; i < 3000; i++) deepEqual(data[i * 1000 + 999], i % 251);
  } finally {
    await Deno.remove(path);
  }
});
