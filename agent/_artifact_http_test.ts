import { match, rejects } from "node:assert/strict";
import { ArtifactRefused, collectArtifacts } from "./artifacts.ts";
import { httpArtifactSink } from "./_artifact_http.ts";

Deno.test("an upload to a server that stopped taking bytes fails, so that the run's end is not held forever", async () => {
  const dir = await Deno.makeTempDir({ prefix: "oneoff-artifacts-" });
  // A frozen server: connections are accepted, nothing is read or answered.
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const held: Deno.Conn[] = [];
  const accepting = (async () => {
    for await (const conn of listener) held.push(conn);
  })();
  try {
    const file = new Uint8Array(32 * 1024 * 1024);
    await Deno.writeFile(`${dir}/big.bin`, file);
    const { files } = await collectArtifacts(dir, file.length);
    const { port } = listener.addr as Deno.NetAddr;
    const sink = httpArtifactSink(`http://127.0.0.1:${port}`, () => "cred", 0, 500);
    // Not a refusal: the delivery tries it again, then names it lost.
    await rejects(sink.put("run-1", files[0]!), (err: Error) => {
      match(err.message, /^Cannot send big\.bin: the server took nothing for 0\.5 s$/);
      return !(err instanceof ArtifactRefused);
    });
    await rejects(sink.done("run-1", []), (err: Error) => {
      match(err.message, /^Cannot report the refused files: the server took nothing/);
      return true;
    });
  } finally {
    listener.close();
    await accepting.catch(() => {});
    for (const conn of held) conn.close();
    await Deno.remove(dir, { recursive: true });
  }
});
