// The chat view: the signed-in user's conversations (GET /v1/me/conversations), one conversation's
// messages (GET /v1/conversations/{id}) and its peers' presence, kept live over the WebSocket
// (/v1/ws): the socket is this user's connection, so opening the view makes them online and closing
// the tab (or signing out) makes them "last seen". Every listed conversation is opened on the socket,
// so presence and new messages arrive without a reload; messages are sent over the socket.
"use strict";

const Chat = {
  me: null,
  socket: null,
  socketWanted: false,
  retry: 0,
  conversations: new Map(),   // id -> {id, members, last_message}
  opened: new Set(),          // conversation ids the socket has opened
  presence: new Map(),        // user -> {online, last_seen, connections}
  presenceFrom: new Map(),    // user -> the log offset the shown presence reflects up to (pushes below it are old)
  messages: new Map(),        // conversation id -> Map(seq -> message)
  hasMore: new Map(),         // conversation id -> older messages exist
  current: null,              // the conversation on screen
  pending: new Map(),         // client_id -> {conversation, content}
  ticker: null,
  inboxTicker: null,
};

Chat.start = async (me) => {
  Chat.me = me;
  Chat.socketWanted = true;
  Chat.connect();
  await Chat.loadInbox();
  // "today" becomes "yesterday" at midnight: the words are redrawn every 30 s. A conversation someone
  // else started shows up at the next look at the inbox (every 10 s), and is opened on the socket then.
  Chat.ticker = setInterval(Chat.renderPresence, 30000);
  Chat.inboxTicker = setInterval(Chat.loadInbox, 10000);
};

// Closes the socket (the server logs this user's disconnect) and forgets everything.
Chat.stop = () => {
  Chat.socketWanted = false;
  if (Chat.socket) Chat.socket.close(1000, "signed out");
  Chat.socket = null;
  clearInterval(Chat.ticker);
  clearInterval(Chat.inboxTicker);
  Chat.conversations.clear();
  Chat.opened.clear();
  Chat.presence.clear();
  Chat.presenceFrom.clear();
  Chat.messages.clear();
  Chat.current = null;
  document.getElementById("conversations").replaceChildren();
  delete document.getElementById("conversations").dataset.shown;
  document.getElementById("conversation-view").hidden = true;
  document.getElementById("no-conversation").hidden = false;
};

Chat.error = (message) => { document.getElementById("chat-error").textContent = message || ""; };

Chat.setStatus = (text, kind) => {
  const status = document.getElementById("socket-status");
  status.textContent = text;
  status.dataset.state = kind;
};

// The socket, with the token in the query (a browser cannot set headers on a WebSocket). Reconnects
// with a growing delay (up to 10 s) while the view wants it.
Chat.connect = () => {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  const socket = new WebSocket(scheme + "//" + location.host + "/v1/ws?token=" + encodeURIComponent(PL.token()));
  Chat.socket = socket;
  Chat.setStatus("connecting…", "connecting");
  socket.onmessage = (event) => {
    let frame;
    try { frame = JSON.parse(event.data); } catch (e) { return; }
    Chat.receive(frame);
  };
  socket.onclose = (event) => {
    if (Chat.socket !== socket) return;
    Chat.opened.clear();
    if (event.code === 4401 || event.code === 4403) {
      Chat.setStatus("refused", "closed");
      Chat.error("The server refused the socket (" + (event.reason || event.code) + "): sign in again.");
      return;
    }
    if (!Chat.socketWanted) return;
    const delay = Math.min(10000, 500 * 2 ** Chat.retry++);
    Chat.setStatus("reconnecting…", "connecting");
    setTimeout(() => { if (Chat.socketWanted && Chat.socket === socket) Chat.connect(); }, delay);
  };
};

Chat.send = (frame) => {
  if (Chat.socket && Chat.socket.readyState === WebSocket.OPEN) {
    Chat.socket.send(JSON.stringify(frame));
    return true;
  }
  return false;
};

Chat.receive = (frame) => {
  switch (frame.type) {
    case "ready":
      Chat.retry = 0;
      Chat.setStatus("live", "live");
      for (const id of Chat.conversations.keys()) Chat.send({ op: "open", conversation: id });
      break;
    case "opened": {
      Chat.opened.add(frame.conversation);
      for (const [user, presence] of Object.entries(frame.presence || {})) {
        Chat.setPresence(user, presence, frame.presence_cursor);
      }
      // The messages up to last_seq come from the snapshot, every later one is pushed.
      if (frame.conversation === Chat.current) Chat.loadMessages(frame.conversation);
      Chat.renderPresence();
      break;
    }
    case "presence": {
      const from = Chat.presenceFrom.get(frame.user) ?? 0;
      if (frame.offset < from) break;   // older than the snapshot already shown
      const previous = Chat.presence.get(frame.user) || {};
      Chat.presence.set(frame.user, {
        online: frame.online,
        last_seen: "last_seen" in frame ? frame.last_seen : previous.last_seen,
        connections: previous.connections,
      });
      Chat.presenceFrom.set(frame.user, frame.offset + 1);
      Chat.renderPresence();
      break;
    }
    case "message":
      Chat.addMessages(frame.conversation, [frame]);
      break;
    case "sent": {
      const pending = Chat.pending.get(frame.client_id);
      Chat.pending.delete(frame.client_id);
      if (pending) {
        Chat.addMessages(frame.conversation, [{ seq: frame.seq, sender: Chat.me, content: pending.content, ts: frame.ts }]);
      }
      break;
    }
    case "error":
      Chat.error(frame.error ? frame.error.message : "the server sent an error");
      break;
  }
};

// A presence read in a snapshot whose cursor is `cursor`: pushes from that offset on are newer.
Chat.setPresence = (user, presence, cursor) => {
  if ((Chat.presenceFrom.get(user) ?? -1) > cursor) return;
  Chat.presence.set(user, presence);
  Chat.presenceFrom.set(user, cursor);
};

Chat.loadInbox = async () => {
  try {
    const inbox = await PL.api("GET", "/v1/me/conversations");
    for (const conversation of inbox.conversations) {
      Chat.conversations.set(conversation.id, conversation);
      for (const [user, presence] of Object.entries(conversation.presence || {})) {
        Chat.setPresence(user, presence, inbox.presence_cursor);
      }
      if (!Chat.opened.has(conversation.id)) Chat.send({ op: "open", conversation: conversation.id });
    }
    Chat.renderInbox();
  } catch (e) {
    Chat.error("Could not load your conversations: " + e.message);
  }
};

Chat.peers = (conversation) => conversation.members.filter((m) => m !== Chat.me);

Chat.lastActivity = (conversation) => {
  const stored = Chat.messages.get(conversation.id);
  let last = conversation.last_message;
  if (stored) for (const m of stored.values()) if (!last || m.seq > last.seq) last = m;
  return last;
};

Chat.renderInbox = () => {
  const list = document.getElementById("conversations");
  const items = [...Chat.conversations.values()].sort((a, b) => {
    const x = Chat.lastActivity(a), y = Chat.lastActivity(b);
    return (y ? Date.parse(y.ts) : 0) - (x ? Date.parse(x.ts) : 0);
  });
  // Redrawn only when what it shows changed (order, last messages, selection): a list redrawn under the
  // pointer would swallow a click.
  const shown = JSON.stringify([Chat.current, items.map((c) => [c.id, (Chat.lastActivity(c) || {}).seq])]);
  if (list.dataset.shown === shown) return Chat.renderPresence();
  list.dataset.shown = shown;
  list.replaceChildren(...items.map((conversation) => {
    const last = Chat.lastActivity(conversation);
    const peers = Chat.peers(conversation);
    const item = PL.el("li", { class: conversation.id === Chat.current ? "selected" : "", dataset: { conversation: conversation.id } },
      PL.el("span", { class: "name" }, peers.join(", ") || Chat.me),
      PL.el("span", { class: "presence", dataset: { user: peers.length === 1 ? peers[0] : "" } }),
      PL.el("span", { class: "snippet" }, last ? (last.sender === Chat.me ? "You: " : "") + last.content : "no messages yet"));
    item.tabIndex = 0;
    item.addEventListener("click", () => Chat.open(conversation.id));
    item.addEventListener("keydown", (e) => { if (e.key === "Enter") Chat.open(conversation.id); });
    return item;
  }));
  document.getElementById("inbox-empty").hidden = items.length > 0;
  Chat.renderPresence();
};

// The header's words for the peers: one peer's presence, or each member's in a group.
Chat.renderPresence = () => {
  for (const span of document.querySelectorAll("#conversations .presence")) {
    const presence = Chat.presence.get(span.dataset.user);
    span.textContent = span.dataset.user ? PL.presenceText(presence) : "";
    span.dataset.online = presence && presence.online ? "true" : "false";
  }
  const conversation = Chat.conversations.get(Chat.current);
  if (!conversation) return;
  const peers = Chat.peers(conversation);
  const header = document.getElementById("peer-presence");
  if (peers.length === 1) {
    const presence = Chat.presence.get(peers[0]);
    header.textContent = PL.presenceText(presence);
    header.dataset.online = presence && presence.online ? "true" : "false";
  } else {
    header.textContent = peers.map((p) => p + ": " + PL.presenceText(Chat.presence.get(p))).join(" · ");
    header.dataset.online = peers.some((p) => (Chat.presence.get(p) || {}).online) ? "true" : "false";
  }
};

Chat.open = (id) => {
  Chat.current = id;
  Chat.error("");
  const conversation = Chat.conversations.get(id);
  document.getElementById("no-conversation").hidden = true;
  document.getElementById("conversation-view").hidden = false;
  document.getElementById("peer-name").textContent = Chat.peers(conversation).join(", ");
  Chat.renderInbox();
  Chat.renderMessages();
  // Once the socket has opened it, the snapshot covers everything not pushed; until then, "opened" loads it.
  if (Chat.opened.has(id)) Chat.loadMessages(id);
  else if (!Chat.send({ op: "open", conversation: id })) Chat.loadMessages(id);
  document.getElementById("message-input").focus();
};

Chat.loadMessages = async (id, beforeSeq) => {
  try {
    const query = beforeSeq ? "?before_seq=" + beforeSeq + "&limit=50" : "?limit=50";
    const snapshot = await PL.api("GET", "/v1/conversations/" + PL.path(id) + query);
    for (const [user, presence] of Object.entries(snapshot.presence || {})) {
      Chat.setPresence(user, presence, snapshot.presence_cursor);
    }
    if (beforeSeq || !Chat.hasMore.has(id)) Chat.hasMore.set(id, snapshot.has_more);
    Chat.addMessages(id, snapshot.messages);
    Chat.renderPresence();
  } catch (e) {
    Chat.error("Could not load the conversation: " + e.message);
  }
};

Chat.addMessages = (id, messages) => {
  if (!Chat.messages.has(id)) Chat.messages.set(id, new Map());
  const stored = Chat.messages.get(id);
  for (const m of messages) stored.set(m.seq, { seq: m.seq, sender: m.sender, content: m.content, ts: m.ts });
  if (id === Chat.current) Chat.renderMessages();
  Chat.renderInbox();
};

Chat.renderMessages = () => {
  const list = document.getElementById("messages");
  const stored = Chat.messages.get(Chat.current) || new Map();
  const sorted = [...stored.values()].sort((a, b) => a.seq - b.seq);
  const atBottom = list.scrollHeight - list.scrollTop - list.clientHeight < 40;
  list.replaceChildren(...sorted.map((m) => PL.el("li", { class: m.sender === Chat.me ? "mine" : "theirs", dataset: { seq: m.seq, sender: m.sender } },
    PL.el("span", { class: "sender" }, m.sender),
    PL.el("span", { class: "content" }, m.content),
    PL.el("time", { datetime: m.ts, title: PL.dateTime(Date.parse(m.ts)) }, PL.clock(new Date(m.ts))))));
  document.getElementById("older").hidden = !Chat.hasMore.get(Chat.current);
  if (atBottom || sorted.length <= 50) list.scrollTop = list.scrollHeight;
};

Chat.post = async (content) => {
  const id = Chat.current;
  const clientID = "c-" + Date.now().toString(36) + "-" + Math.random().toString(36).slice(2, 10);
  Chat.pending.set(clientID, { conversation: id, content });
  if (Chat.send({ op: "send", conversation: id, content, client_id: clientID })) return;
  // No socket right now: over HTTP, with the same client_id rules.
  try {
    const sent = await PL.api("POST", "/v1/conversations/" + PL.path(id) + "/messages", { content, client_id: clientID });
    Chat.pending.delete(clientID);
    Chat.addMessages(id, [{ seq: sent.seq, sender: Chat.me, content, ts: sent.ts }]);
  } catch (e) {
    Chat.error("Not sent: " + e.message);
  }
};

Chat.newChat = async (peer) => {
  try {
    const created = await PL.api("POST", "/v1/conversations", { members: [Chat.me, peer] });
    if (!Chat.conversations.has(created.id)) {
      Chat.conversations.set(created.id, { id: created.id, members: [Chat.me, peer], last_message: null });
    }
    Chat.open(created.id);
  } catch (e) {
    Chat.error("Could not start the chat: " + e.message);
  }
};

Chat.wire = () => {
  document.getElementById("composer").addEventListener("submit", (e) => {
    e.preventDefault();
    const input = document.getElementById("message-input");
    const content = input.value;
    if (!content.trim() || !Chat.current) return;
    input.value = "";
    Chat.post(content);
  });
  document.getElementById("new-chat").addEventListener("submit", (e) => {
    e.preventDefault();
    const input = document.getElementById("new-peer");
    const peer = input.value.trim();
    if (!peer) return;
    input.value = "";
    Chat.newChat(peer);
  });
  document.getElementById("older").addEventListener("click", () => {
    const stored = Chat.messages.get(Chat.current);
    const first = stored && stored.size ? Math.min(...stored.keys()) : null;
    if (first) Chat.loadMessages(Chat.current, first);
  });
};
