// The audit view, for operators: a user's sessions in a time window as a timeline (GET
// /v1/users/{id}/history: one lane per device, each bar coloured by how the session ended), a cursor
// dragged over it that shows the user's state at that time (GET /v1/users/{id}/state?at=T: the fold
// `presence state --at` runs), and the log's figures (GET /v1/log, and events/s from /metrics).
"use strict";

const SVG = "http://www.w3.org/2000/svg";

const Audit = {
  user: null,
  from: 0,
  to: 0,
  sessions: [],
  cursorAt: null,
  stateInFlight: false,
  geometry: null,
  samples: [],      // [{t, events}] from /metrics, the last 5 minutes
  timers: [],
};

Audit.windowMinutes = 5;

const svgEl = (tag, attributes = {}, text) => {
  const node = document.createElementNS(SVG, tag);
  for (const [key, value] of Object.entries(attributes)) {
    if (value !== undefined && value !== null) node.setAttribute(key, value);
  }
  if (text !== undefined) node.textContent = text;
  return node;
};

// A datetime-local input's value for `ms` (local time, to the second) and back.
const localInput = (ms) => {
  const d = new Date(ms), pad = (n) => String(n).padStart(2, "0");
  return d.getFullYear() + "-" + pad(d.getMonth() + 1) + "-" + pad(d.getDate()) + "T" + pad(d.getHours()) + ":" + pad(d.getMinutes()) + ":" + pad(d.getSeconds());
};
const fromInput = (value) => new Date(value).getTime();

Audit.error = (message) => { document.getElementById("audit-error").textContent = message || ""; };

// `params`: from the address (#audit?user=bob&from=ISO&to=ISO&at=ISO), so a view can be linked to.
Audit.start = (claims, params) => {
  const now = Date.now();
  const user = params.get("user") || (claims.role === "user" ? claims.sub : "");
  const from = params.has("from") ? Date.parse(params.get("from")) : now - 3600000;
  const to = params.has("to") ? Date.parse(params.get("to")) : now;
  document.getElementById("audit-user").value = user;
  document.getElementById("audit-from").value = localInput(from);
  document.getElementById("audit-to").value = localInput(to);
  Audit.loadLog();
  Audit.sampleMetrics();
  // /v1/log reads every batch of the log (as log-info does): every 30 s, not more.
  Audit.timers.push(setInterval(Audit.loadLog, 30000), setInterval(Audit.sampleMetrics, 5000));
  if (user) Audit.show(user, from, to, params.has("at") ? Date.parse(params.get("at")) : null);
};

Audit.stop = () => {
  for (const timer of Audit.timers) clearInterval(timer);
  Audit.timers = [];
  Audit.samples = [];
};

Audit.show = async (user, from, to, at) => {
  Audit.error("");
  if (!(from < to)) return Audit.error("The window's start must be before its end.");
  try {
    const query = "?from=" + Math.floor(from) + "&to=" + Math.ceil(to);
    const history = await PL.api("GET", "/v1/users/" + PL.path(user) + "/history" + query);
    Object.assign(Audit, { user, from, to, sessions: history.sessions });
    Audit.draw();
    Audit.moveCursor(at !== null && at >= from && at <= to ? at : Math.min(Date.now(), to));
  } catch (e) {
    Audit.error("Could not read " + user + "'s history: " + e.message);
  }
};

// Tick steps, the first that gives at most ~8 ticks across the window.
const tickSteps = [1e3, 5e3, 15e3, 3e4, 6e4, 3e5, 9e5, 18e5, 36e5, 108e5, 216e5, 432e5, 864e5, 6048e5];

Audit.draw = () => {
  const svg = document.getElementById("timeline");
  svg.replaceChildren();
  const lanes = [];
  for (const s of Audit.sessions) if (!lanes.includes(s.conn)) lanes.push(s.conn);
  const width = Math.max(640, document.getElementById("timeline-box").clientWidth - 2);
  const left = 190, right = 16, top = 34, lane = 28;
  const plotWidth = width - left - right;
  const height = top + Math.max(1, lanes.length) * lane + 12;
  const { from, to } = Audit;
  const x = (ms) => left + ((ms - from) / (to - from)) * plotWidth;
  Audit.geometry = { left, plotWidth, top, height, x, time: (px) => from + ((px - left) / plotWidth) * (to - from) };
  svg.setAttribute("width", width);
  svg.setAttribute("height", height);
  svg.setAttribute("viewBox", "0 0 " + width + " " + height);
  Object.assign(svg.dataset, { from, to, user: Audit.user, left, plotWidth });

  // The axis: ticks at a round step, in local time.
  const step = tickSteps.find((s) => (to - from) / s <= 8) || tickSteps[tickSteps.length - 1];
  const offset = new Date(from).getTimezoneOffset() * 60000;
  const axis = svgEl("g", { class: "axis" });
  for (let t = Math.ceil((from - offset) / step) * step + offset; t <= to; t += step) {
    const label = step >= 864e5 ? new Date(t).toLocaleDateString(undefined, { day: "numeric", month: "short" })
      : step < 6e4 ? new Date(t).toLocaleTimeString() : PL.clock(new Date(t));
    axis.append(svgEl("line", { x1: x(t), x2: x(t), y1: top - 6, y2: height - 8 }), svgEl("text", { x: x(t), y: top - 12 }, label));
  }
  svg.append(axis);
  const now = Date.now();
  if (now > from && now < to) svg.append(svgEl("line", { class: "now", x1: x(now), x2: x(now), y1: top - 4, y2: height - 8 }));

  lanes.forEach((conn, i) => {
    const y = top + i * lane;
    svg.append(svgEl("rect", { class: "lane", x: left, y, width: plotWidth, height: lane }));
    svg.append(svgEl("text", { class: "lane-label", x: left - 8, y: y + lane / 2 + 4 }, conn.length > 26 ? conn.slice(0, 25) + "…" : conn));
  });
  const bars = svgEl("g", { class: "sessions" });
  for (const s of Audit.sessions) {
    const start = s.start === null ? from : Math.max(from, Date.parse(s.start));
    const end = s.end === null ? Math.min(to, Math.max(now, start)) : Math.min(to, Date.parse(s.end));
    const reason = s.end === null ? "open" : s.end_reason;
    const y = top + lanes.indexOf(s.conn) * lane + 5;
    const bar = svgEl("rect", {
      class: "session reason-" + reason + (s.start === null ? " unknown-start" : ""),
      x: x(start), y, width: Math.max(2, x(end) - x(start)), height: lane - 10, rx: 3,
      "data-conn": s.conn, "data-gateway": s.gateway, "data-start": s.start || "", "data-end": s.end || "", "data-reason": reason,
    });
    bar.append(svgEl("title", {}, Audit.describe(s)));
    bar.addEventListener("mouseenter", (e) => Audit.tooltip(s, e));
    bar.addEventListener("mousemove", (e) => Audit.tooltip(s, e));
    bar.addEventListener("mouseleave", () => { document.getElementById("tooltip").hidden = true; });
    bars.append(bar);
  }
  svg.append(bars);
  if (!Audit.sessions.length) {
    svg.append(svgEl("text", { class: "empty", x: left + plotWidth / 2, y: top + lane / 2 + 4 }, "no sessions of " + Audit.user + " in this window"));
  }

  // The cursor: a line with a handle, dragged with the pointer or moved with the arrow keys.
  const cursor = svgEl("g", { id: "cursor", tabindex: 0, role: "slider", "aria-label": "time cursor" });
  cursor.append(svgEl("line", { x1: 0, x2: 0, y1: top - 4, y2: height - 8 }), svgEl("rect", { class: "handle", x: -6, y: top - 22, width: 12, height: 18, rx: 3 }));
  svg.append(cursor);
};

Audit.describe = (s) => [
  s.conn + " via " + s.gateway,
  "start: " + (s.start ? PL.dateTime(Date.parse(s.start)) : "unknown (before the log)"),
  "end: " + (s.end ? PL.dateTime(Date.parse(s.end)) + " (" + s.end_reason + ")" : "still open"),
  "duration: " + (s.duration_ms === null ? (s.end ? "-" : PL.duration(Date.now() - Date.parse(s.start)) + " so far") : PL.duration(s.duration_ms)),
].join("\n");

Audit.tooltip = (s, event) => {
  const tip = document.getElementById("tooltip");
  tip.textContent = Audit.describe(s);
  tip.hidden = false;
  const box = document.getElementById("timeline-box").getBoundingClientRect();
  tip.style.left = (event.clientX - box.left + 14) + "px";
  tip.style.top = (event.clientY - box.top + 14) + "px";
};

Audit.moveCursor = (ms) => {
  if (!Audit.geometry) return;
  const at = Math.round(Math.min(Audit.to, Math.max(Audit.from, ms)));
  Audit.cursorAt = at;
  const cursor = document.getElementById("cursor");
  cursor.setAttribute("transform", "translate(" + Audit.geometry.x(at) + ",0)");
  cursor.setAttribute("aria-valuetext", PL.dateTime(at));
  const label = document.getElementById("cursor-time");
  label.textContent = PL.dateTime(at);
  label.dateTime = new Date(at).toISOString();
  document.getElementById("cursor-state").dataset.at = at;
  Audit.requestState();
};

// One state request at a time: while one is out, the cursor may move on; the newest time is asked next.
Audit.requestState = async () => {
  if (Audit.stateInFlight || Audit.cursorAt === null) return;
  const at = Audit.cursorAt, user = Audit.user;
  Audit.stateInFlight = true;
  try {
    const state = await PL.api("GET", "/v1/users/" + PL.path(user) + "/state?at=" + at);
    if (user === Audit.user) Audit.showState(state, at);
  } catch (e) {
    Audit.error("Could not read the state at that time: " + e.message);
  } finally {
    Audit.stateInFlight = false;
    if (Audit.cursorAt !== at) Audit.requestState();
  }
};

Audit.showState = (state, at) => {
  const panel = document.getElementById("cursor-state");
  Object.assign(panel.dataset, {
    stateAt: at, online: state.online, connections: state.connections, lastSeen: state.last_seen || "",
  });
  const online = document.getElementById("cursor-online");
  online.textContent = state.online ? "online" : "offline";
  online.dataset.online = state.online;
  document.getElementById("cursor-connections").textContent = state.connections + (state.connections === 1 ? " connection" : " connections");
  document.getElementById("cursor-last-seen").textContent = state.last_seen ? "last seen " + PL.dateTime(Date.parse(state.last_seen)) : "never seen before";
  document.getElementById("cursor-through").textContent = "(log through offset " + state.through_offset + ")";
};

Audit.loadLog = async () => {
  try {
    const log = await PL.api("GET", "/v1/log");
    document.getElementById("log-error").textContent = "";
    const t = log.total;
    const figures = [
      ["segments", PL.number(log.segments.length)],
      ["retained", t.events ? PL.dateTime(Date.parse(t.first_time)) + " → " + PL.dateTime(Date.parse(t.last_time)) : "empty"],
      ["offsets", t.events ? PL.number(t.base_offset) + " – " + PL.number(t.end_offset - 1) : "-"],
      ["events", PL.number(t.events)],
      ["bytes", PL.bytes(t.log_bytes) + " (+ " + PL.bytes(t.index_bytes) + " of indexes)"],
      ["bytes/event", t.events ? t.bytes_per_event.toFixed(2) : "-"],
      ["durable through", log.durable_end_offset ? PL.number(log.durable_end_offset - 1) : "-"],
      ["events/s", Audit.rateText()],
    ];
    document.getElementById("log-figures").replaceChildren(...figures.flatMap(([name, value]) =>
      [PL.el("dt", {}, name), PL.el("dd", { dataset: { figure: name } }, value)]));
    document.querySelector("#segments tbody").replaceChildren(...log.segments.map((s) => PL.el("tr", {},
      PL.el("td", {}, s.segment), PL.el("td", {}, s.events ? s.base_offset + "–" + (s.end_offset - 1) : "-"),
      PL.el("td", {}, PL.number(s.events)), PL.el("td", {}, s.first_time ? PL.dateTime(Date.parse(s.first_time)) : "-"),
      PL.el("td", {}, s.last_time ? PL.dateTime(Date.parse(s.last_time)) : "-"), PL.el("td", {}, PL.bytes(s.log_bytes)),
      PL.el("td", {}, s.bytes_per_event ? s.bytes_per_event.toFixed(2) : "-"))));
  } catch (e) {
    document.getElementById("log-error").textContent = "The log's figures: " + e.message;
  }
};

// presence_events_appended_total from /metrics, every 5 s: the rate over the last minutes.
Audit.sampleMetrics = async () => {
  try {
    const text = await PL.api("GET", "/metrics");
    const match = /^presence_events_appended_total(?:\{[^}]*\})?\s+([0-9.eE+]+)/m.exec(text);
    if (!match) return;
    const now = Date.now();
    Audit.samples.push({ t: now, events: Number(match[1]) });
    Audit.samples = Audit.samples.filter((s) => now - s.t <= Audit.windowMinutes * 60000);
    Audit.drawRate();
    const dd = document.querySelector('[data-figure="events/s"]');
    if (dd) dd.textContent = Audit.rateText();
  } catch (e) {
    // The figures say why (loadLog shows the error); the rate just waits.
  }
};

Audit.rateText = () => {
  const s = Audit.samples;
  if (s.length < 2) return "measuring…";
  const first = s[0], last = s[s.length - 1];
  const rate = (last.events - first.events) / ((last.t - first.t) / 1000);
  return rate.toFixed(rate < 10 ? 2 : 0) + " over the last " + PL.duration(last.t - first.t);
};

Audit.drawRate = () => {
  const svg = document.getElementById("rate-chart");
  const s = Audit.samples;
  svg.replaceChildren();
  if (s.length < 2) return;
  const rates = s.slice(1).map((p, i) => ({ t: p.t, r: (p.events - s[i].events) / ((p.t - s[i].t) / 1000) }));
  const max = Math.max(1, ...rates.map((p) => p.r));
  const t0 = Date.now() - Audit.windowMinutes * 60000;
  const points = rates.map((p) => ((p.t - t0) / (Audit.windowMinutes * 60000)) * 320 + "," + (56 - (p.r / max) * 50)).join(" ");
  svg.append(svgEl("polyline", { points }), svgEl("text", { x: 2, y: 10 }, "max " + max.toFixed(1) + "/s"));
};

Audit.wire = () => {
  document.getElementById("audit-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const user = document.getElementById("audit-user").value.trim();
    const from = fromInput(document.getElementById("audit-from").value), to = fromInput(document.getElementById("audit-to").value);
    Audit.show(user, from, to, null);
  });
  for (const button of document.querySelectorAll("[data-range]")) {
    button.addEventListener("click", () => {
      const now = Date.now();
      document.getElementById("audit-from").value = localInput(now - Number(button.dataset.range));
      document.getElementById("audit-to").value = localInput(now);
      document.getElementById("audit-form").requestSubmit();
    });
  }
  const svg = document.getElementById("timeline");
  const timeAt = (event) => {
    const box = svg.getBoundingClientRect();
    return Audit.geometry.time(event.clientX - box.left);
  };
  let dragging = false;
  svg.addEventListener("pointerdown", (e) => {
    if (!Audit.geometry) return;
    dragging = true;
    svg.setPointerCapture(e.pointerId);
    Audit.moveCursor(timeAt(e));
  });
  svg.addEventListener("pointermove", (e) => { if (dragging) Audit.moveCursor(timeAt(e)); });
  const stop = () => { dragging = false; };
  svg.addEventListener("pointerup", stop);
  svg.addEventListener("pointercancel", stop);
  svg.addEventListener("keydown", (e) => {
    if (!Audit.geometry || (e.key !== "ArrowLeft" && e.key !== "ArrowRight")) return;
    e.preventDefault();
    const step = (Audit.to - Audit.from) / (e.shiftKey ? 10 : 100);
    Audit.moveCursor(Audit.cursorAt + (e.key === "ArrowLeft" ? -step : step));
  });
};
