// What the console's views share: the signed-in token, calls to the API, and the words for presence
// and times (in the browser's time zone and locale). No library: plain DOM and fetch.
"use strict";

const PL = {};

// The token lives in sessionStorage: one per tab, so two windows can be Alice and Bob.
PL.tokenKey = "presencelog.token";

PL.token = () => sessionStorage.getItem(PL.tokenKey);

// The token's claims ({sub, role, exp}) as the server signed them; only read here to label the page
// and pick a view: the server checks the token on every request.
PL.claims = (token) => {
  const part = (token || "").split(".")[1];
  if (!part) return null;
  try {
    const json = atob(part.replace(/-/g, "+").replace(/_/g, "/") + "===".slice((part.length + 3) % 4));
    const bytes = Uint8Array.from(json, (c) => c.charCodeAt(0));
    return JSON.parse(new TextDecoder().decode(bytes));
  } catch (e) {
    return null;
  }
};

// An API error: the server's {"error":{"code","message"}} with the HTTP status.
class APIError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}
PL.APIError = APIError;

// Calls the API with the signed-in token; resolves to the parsed JSON (or text for text/plain), throws
// an APIError with the server's own words otherwise.
PL.api = async (method, path, body, token = PL.token()) => {
  const headers = {};
  if (token) headers.Authorization = "Bearer " + token;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  let response;
  try {
    response = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  } catch (e) {
    throw new APIError(0, "unreachable", "the server did not answer (" + e.message + ")");
  }
  const type = response.headers.get("Content-Type") || "";
  const payload = type.includes("json") ? await response.json().catch(() => null) : await response.text();
  if (!response.ok) {
    const error = payload && payload.error;
    throw new APIError(response.status, error ? error.code : "http_" + response.status,
      error ? error.message : "HTTP " + response.status);
  }
  return payload;
};

PL.path = (...parts) => parts.map((p) => encodeURIComponent(p)).join("/");

// Small DOM helper: el("li", {class: "x", dataset: {seq: 1}}, "text", child...).
PL.el = (tag, attributes = {}, ...children) => {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attributes)) {
    if (key === "dataset") Object.assign(node.dataset, value);
    else if (key === "class") node.className = value;
    else if (value !== undefined && value !== null) node.setAttribute(key, value);
  }
  for (const child of children) node.append(child);
  return node;
};

const sameDay = (a, b) => a.getFullYear() === b.getFullYear() && a.getMonth() === b.getMonth() && a.getDate() === b.getDate();

PL.clock = (date) => new Intl.DateTimeFormat(undefined, { hour: "numeric", minute: "2-digit" }).format(date);

// A date and time for tables and tooltips, with seconds: "3 Dec 2026, 13:04:05" in the locale's order.
PL.dateTime = (ms) => new Intl.DateTimeFormat(undefined, {
  day: "numeric", month: "short", year: "numeric", hour: "numeric", minute: "2-digit", second: "2-digit",
}).format(new Date(ms));

// What a chat app's header says: "online", "last seen today at 9:42", "last seen yesterday at 21:03",
// "last seen 12 Jan at 08:15" (with the year when it is another year), or "offline" for someone never
// seen. `presence` is {online, last_seen}.
PL.presenceText = (presence, now = new Date()) => {
  if (!presence) return "";
  if (presence.online) return "online";
  if (!presence.last_seen) return "offline";
  const seen = new Date(presence.last_seen);
  const time = PL.clock(seen);
  if (sameDay(seen, now) || seen > now) return "last seen today at " + time;
  const yesterday = new Date(now);
  yesterday.setDate(now.getDate() - 1);
  if (sameDay(seen, yesterday)) return "last seen yesterday at " + time;
  const options = { day: "numeric", month: "short" };
  if (seen.getFullYear() !== now.getFullYear()) options.year = "numeric";
  return "last seen " + new Intl.DateTimeFormat(undefined, options).format(seen) + " at " + time;
};

// 3723004 ms -> "1h 2m 3s".
PL.duration = (ms) => {
  if (ms === null || ms === undefined) return "-";
  const s = Math.round(ms / 1000), h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60);
  return (h ? h + "h " : "") + (h || m ? m + "m " : "") + (s % 60) + "s";
};

PL.bytes = (n) => {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return (i ? n.toFixed(1) : String(n)) + " " + units[i];
};

PL.number = (n) => new Intl.NumberFormat().format(n);
