/**
 * The agent's {@link ArtifactSink} over HTTP: `PUT` of each file's bytes
 * (streamed from the file, its sha256 in a header for the server to check)
 * and `POST` of the refusals, with the agent's own credential as bearer.
 * @module
 */
import {
  agentArtifactPath,
  agentArtifactsDonePath,
  ARTIFACT_SHA256_HEADER,
  type ArtifactRefusal,
  VERSION,
} from "../protocol/mod.ts";
import {
  type ArtifactFile,
  ArtifactRefused,
  type ArtifactSink,
  hashArtifact,
  openArtifact,
} from "./artifacts.ts";

/** How long a file is tried again while the server cannot be reached, unless told otherwise. */
export const ARTIFACT_RETRY_MS = 120_000;

/** How long an upload (or the report) may go without the server taking or saying anything. */
export const ARTIFACT_IDLE_MS = 60_000;

/**
 * A signal that aborts once `idleMs` pass without `touch()`: a frozen
 * server (or a network that drops everything) takes no bytes and sends no
 * answer, and without it the upload, and so the run's end, waited forever.
 */
function idleSignal(idleMs: number, what: string) {
  const abort = new AbortController();
  let last = Date.now();
  const timer = setInterval(() => {
    if (Date.now() - last < idleMs) return;
    abort.abort(new Error(`${what}: the server took nothing for ${idleMs / 1000} s`));
  }, Math.max(10, Math.min(1000, idleMs / 4)));
  return {
    signal: abort.signal,
    touch: () => last = Date.now(),
    [Symbol.dispose]: () => clearInterval(timer),
  };
}

/** The sink that sends to the server at `base`. */
export function httpArtifactSink(
  base: string,
  credential: () => string | undefined,
  retryMs = ARTIFACT_RETRY_MS,
  idleMs = ARTIFACT_IDLE_MS,
): ArtifactSink {
  const headers = () => ({
    authorization: `Bearer ${credential() ?? ""}`,
    "user-agent": `oneoff-agent/${VERSION} (deno ${Deno.version.deno}; ${Deno.build.os})`,
  });
  return {
    retryMs,
    async put(runId: string, file: ArtifactFile) {
      const sha256 = await hashArtifact(file);
      const opened = await openArtifact(file);
      const what = `Cannot send ${file.name}`;
      using idle = idleSignal(idleMs, what);
      const body = opened.readable.pipeThrough(
        new TransformStream<Uint8Array, Uint8Array>({
          transform(chunk, controller) {
            idle.touch();
            controller.enqueue(chunk);
          },
        }),
      );
      try {
        const res = await fetch(`${base}${agentArtifactPath(runId, file.name)}`, {
          method: "PUT",
          headers: {
            ...headers(),
            "content-type": "application/octet-stream",
            [ARTIFACT_SHA256_HEADER]: sha256,
          },
          body,
          signal: idle.signal,
        });
        await answer(res, what);
      } catch (err) {
        throw idle.signal.aborted ? idle.signal.reason : err;
      } finally {
        try {
          opened.close();
        } catch {
          // Closed already, with its stream.
        }
      }
    },
    async done(runId: string, refused: ArtifactRefusal[]) {
      const what = "Cannot report the refused files";
      using idle = idleSignal(idleMs, what);
      try {
        const res = await fetch(`${base}${agentArtifactsDonePath(runId)}`, {
          method: "POST",
          headers: { ...headers(), "content-type": "application/json" },
          body: JSON.stringify({ refused }),
          signal: idle.signal,
        });
        await answer(res, what);
      } catch (err) {
        throw idle.signal.aborted ? idle.signal.reason : err;
      }
    },
  };
}

// A 4xx other than 429 is the server's final word; a 5xx or 429 may pass.
async function answer(res: Response, what: string): Promise<void> {
  const text = await res.text().catch(() => "");
  if (res.ok) return;
  let message = `${what}: HTTP ${res.status}`;
  try {
    message = (JSON.parse(text) as { error: { message: string } }).error.message;
  } catch {
    // Not the server's JSON error (a proxy's page): the status says it.
  }
  if (res.status >= 400 && res.status < 500 && res.status !== 429) {
    throw new ArtifactRefused(message);
  }
  throw new Error(message);
}
