// oneoff dashboard: live log following, live sessions and session replay. Plain script, no
// build step; pages work without it, it only adds the live parts. The API
// accepts the session cookie for GET requests, so fetch needs no token.
"use strict";

const MAX_LINES = 2000;

/** Appends one log line, built with textContent so output is never HTML. */
function appendLine(body, line) {
  const row = document.createElement("div");
  row.className = `log-line stream-${line.stream === "stderr" ? "stderr" : "stdout"}`;
  const time = document.createElement("time");
  time.dateTime = line.ts;
  time.textContent = line.ts.slice(11, 19);
  const source = document.createElement("span");
  source.className = "log-source";
  source.textContent = line.source;
  const text = document.createElement("span");
  text.className = "log-text";
  text.textContent = line.line;
  row.append(time, source, text);
  body.append(row);
}

function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Long-polls the logs API and appends new lines while the page is open. */
async function followLogs(panel) {
  const body = panel.querySelector("[data-lines]");
  const status = panel.querySelector("[data-follow-status]");
  const filter = panel.dataset.filter;
  let after = Number(panel.dataset.after) || 0;
  const stop = new AbortController();
  addEventListener("pagehide", () => stop.abort());
  const show = (text, live) => {
    status.textContent = text;
    status.classList.toggle("live", live);
  };
  show("live", true);
  while (!stop.signal.aborted) {
    const query = new URLSearchParams({ after: String(after), wait: "20", n: "500" });
    if (filter) query.set("filter", filter);
    try {
      const res = await fetch(`${panel.dataset.follow}?${query}`, {
        headers: { accept: "application/json" },
        signal: stop.signal,
      });
      if (res.status === 401 || res.status === 403) {
        show("signed out: reload to follow", false);
        return;
      }
      if (!res.ok) throw new Error(`HTTP ${res.status}`);
      const { lines } = await res.json();
      if (lines.length === 0) continue;
      // Keep the view pinned to the bottom only if the reader was there.
      const pinned = body.scrollHeight - body.scrollTop - body.clientHeight < 40;
      body.querySelector("[data-empty]")?.remove();
      for (const line of lines) appendLine(body, line);
      while (body.childElementCount > MAX_LINES) body.firstElementChild.remove();
      if (pinned) body.scrollTop = body.scrollHeight;
      after = lines[lines.length - 1].id;
      show("live", true);
    } catch (err) {
      if (stop.signal.aborted) return;
      show(`reconnecting (${err.message})…`, false);
      await sleep(5000);
    }
  }
}

/** Lists a recording's problems above the player; hides the box when there are none. */
function showProblems(box, problems, title = "This recording has problems") {
  box.querySelector("[data-problem-title]").textContent = title;
  const list = box.querySelector("[data-problem-list]");
  list.replaceChildren();
  for (const problem of problems) {
    const item = document.createElement("li");
    item.textContent = problem;
    list.append(item);
  }
  box.hidden = problems.length === 0;
}

/** The cast and its problems, which the audit API sends in a header beside the file. */
async function loadCast(url) {
  const res = await fetch(url);
  if (!res.ok) {
    const body = await res.json().catch(() => ({}));
    throw new Error(body.error?.message ?? `HTTP ${res.status}`);
  }
  let problems = [];
  try {
    problems = JSON.parse(decodeURIComponent(res.headers.get("x-oneoff-audit-problems") ?? "[]"));
  } catch {
    problems = ["The server sent its list of problems in a form this page cannot read"];
  }
  return { cast: await res.text(), problems: Array.isArray(problems) ? problems.map(String) : [] };
}

/**
 * Fetches the recording once (each display is on the app's timeline) and
 * plays it; a speed change recreates the player at the same point.
 */
async function startReplay(section) {
  const mount = section.querySelector("[data-player]");
  const problems = section.querySelector("[data-problems]");
  let recording;
  try {
    recording = await loadCast(section.dataset.cast);
  } catch (err) {
    showProblems(problems, [err.message], "The recording could not be loaded");
    mount.hidden = true;
    section.querySelector("[data-speed]").hidden = true;
    return;
  }
  showProblems(problems, recording.problems);
  if (typeof AsciinemaPlayer === "undefined") {
    mount.textContent = "The player did not load: download the recording instead.";
    return;
  }
  const source = { data: recording.cast };
  const options = { fit: "width", preload: true, idleTimeLimit: 2 };
  let playing = false;
  const create = (extra) => {
    const created = AsciinemaPlayer.create(source, mount, { ...options, ...extra });
    created.addEventListener("playing", () => playing = true);
    created.addEventListener("pause", () => playing = false);
    created.addEventListener("ended", () => playing = false);
    return created;
  };
  // A search hit's link (`?t=`) opens the replay at its moment, paused on it:
  // just after it, since a poster at a time shows what came before that time.
  const start = Number(section.dataset.start) + 0.05;
  let player = create(
    section.dataset.start && Number.isFinite(start)
      ? { startAt: start, poster: `npt:${start}` }
      : {},
  );
  for (const button of section.querySelectorAll("[data-rate]")) {
    button.addEventListener("click", async () => {
      const at = await player.getCurrentTime();
      const resume = playing;
      player.dispose();
      mount.replaceChildren();
      // A paused player shows the frame it was on (the poster), not a blank screen.
      const speed = Number(button.dataset.rate);
      player = create(
        resume
          ? { speed, startAt: at, autoPlay: true }
          : { speed, startAt: at, poster: `npt:${at}` },
      );
      for (const other of section.querySelectorAll("[data-rate]")) {
        other.setAttribute("aria-pressed", String(other === button));
      }
    });
  }
}

/**
 * A running session, live: the player's eventsource driver on the watch API
 * (cookie-authenticated, read-only), with no buffering so that output shows
 * as soon as it comes.
 */
function startLive(section) {
  const mount = section.querySelector("[data-player]");
  const status = section.querySelector("[data-live-status]");
  if (typeof AsciinemaPlayer === "undefined") {
    mount.textContent = "The player did not load: use oneoff watch instead.";
    return;
  }
  const player = AsciinemaPlayer.create(
    { driver: "eventsource", url: section.dataset.live, bufferTime: 0 },
    mount,
    { fit: "width", autoPlay: true },
  );
  player.addEventListener("playing", () => {
    status.textContent = "live";
    status.classList.add("live");
  });
  player.addEventListener("ended", () => {
    status.textContent = "the session ended: reload for its replay";
    status.classList.remove("live");
  });
}

for (const panel of document.querySelectorAll("[data-follow]")) followLogs(panel);
for (const section of document.querySelectorAll("[data-live]")) startLive(section);
for (const section of document.querySelectorAll("[data-replay]")) startReplay(section);
