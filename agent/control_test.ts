import { equal, ok } from "node:assert/strict";
import type { ServerMessage } from "../protocol/mod.ts";
import { createLogger } from "../util/log.ts";
import { waitFor } from "../tests/_wait.ts";
import { ControlChannel } from "./control.ts";

const HELLO = {
  type: "hello" as const,
  token: "t",
  name: "a",
  version: "0",
  capacity: 1,
  sandbox: "bwrap" as const,
  attach: { host: "127.0.0.1", port: 1, tls: false },
  running: [],
  ended: [],
  warnings: [],
};

/**
 * A WebSocket server that welcomes agents and sends heartbeats, and can go
 * silent: it then neither answers nor closes, as a frozen server or a
 * partition looks from the agent.
 */
function fakeServer(heartbeatMs: number, options: { beats: boolean }) {
  const state = { connections: 0, silent: false, heard: 0 };
  const sockets: WebSocket[] = [];
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, (req) => {
    const { socket, response } = Deno.upgradeWebSocket(req);
    state.connections++;
    sockets.push(socket);
    const send = (msg: ServerMessage) => {
      if (!state.silent && socket.readyState === WebSocket.OPEN) socket.send(JSON.stringify(msg));
    };
    const beat = setInterval(() => options.beats && send({ type: "heartbeat" }), heartbeatMs);
    socket.onmessage = (event) => {
      state.heard++;
      if (JSON.parse(String(event.data)).type === "hello") {
        send({ type: "welcome", agentId: "x", heartbeatMs });
      }
    };
    socket.onclose = () => clearInterval(beat);
    return response;
  });
  return {
    state,
    url: `http://127.0.0.1:${server.addr.port}`,
    async [Symbol.asyncDispose]() {
      for (const socket of sockets) {
        try {
          socket.close();
        } catch { /* closed */ }
      }
      await server.shutdown();
    },
  };
}

function channel(url: string) {
  let welcomes = 0;
  const control = new ControlChannel(
    url,
    {
      hello: () => HELLO,
      running: () => [],
      message: () => {},
      connected: () => welcomes++,
    },
    createLogger("test", { level: "silent" }),
    { silentHeartbeats: 3, connectTimeoutMs: 300 },
  );
  return { control, welcomes: () => welcomes };
}

Deno.test("an agent notices a server that went silent and connects again", async () => {
  await using server = fakeServer(50, { beats: true });
  const { control, welcomes } = channel(server.url);
  try {
    await control.start();
    // The agent's own heartbeats, one per interval: well past three intervals.
    await waitFor(() => server.state.heard >= 8, { message: "eight messages from the agent" });
    equal(server.state.connections, 1, "heartbeats keep the channel");
    server.state.silent = true;
    await waitFor(() => server.state.connections >= 2, {
      message: "the agent to drop the silent connection and dial again",
    });
    // The second dial met silence too: not welcomed in time, it dials again.
    await waitFor(() => server.state.connections >= 3, {
      message: "a dial past the connect timeout",
    });
    server.state.silent = false;
    await waitFor(() => welcomes() >= 2, { message: "the agent to be welcomed again" });
  } finally {
    control.close();
  }
});

Deno.test("a server that never sends heartbeats (an older one) is not taken for silent", async () => {
  await using server = fakeServer(50, { beats: false });
  const { control } = channel(server.url);
  try {
    await control.start();
    await waitFor(() => server.state.heard >= 8, { message: "eight messages from the agent" });
    equal(server.state.connections, 1);
    ok(control.connected);
  } finally {
    control.close();
  }
});
