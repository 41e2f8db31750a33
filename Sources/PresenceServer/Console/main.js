// Sign-in and the two views. A user's token opens the chat view (#chat), an operator's the audit view
// (#audit?user=bob&from=ISO&to=ISO&at=ISO); the address says which view is shown, so it can be linked.
"use strict";

const Console = { claims: null, view: null };

Console.signIn = (token) => {
  const claims = PL.claims(token);
  if (!claims || !claims.sub || !claims.role) throw new Error("that is not a PresenceLog token (three base64url parts, as `presence token` prints)");
  if (claims.role === "gateway") throw new Error("a gateway token only posts events: use a user's or an operator's token");
  if (claims.exp && claims.exp * 1000 < Date.now()) throw new Error("that token has expired: mint a new one");
  sessionStorage.setItem(PL.tokenKey, token);
  Console.claims = claims;
  document.getElementById("whoami").textContent = claims.sub + (claims.role === "operator" ? " (operator)" : "");
  document.getElementById("sign-out").hidden = false;
  document.getElementById("tabs").hidden = false;
  document.getElementById("sign-in").hidden = true;
  if (claims.role === "user") Chat.start(claims.sub);
  if (!location.hash || location.hash === "#") location.hash = claims.role === "operator" ? "#audit" : "#chat";
  Console.route();
};

Console.signOut = () => {
  Chat.stop();
  Audit.stop();
  sessionStorage.removeItem(PL.tokenKey);
  Console.claims = null;
  Console.view = null;
  document.getElementById("whoami").textContent = "";
  document.getElementById("socket-status").textContent = "";
  document.getElementById("sign-out").hidden = true;
  document.getElementById("tabs").hidden = true;
  for (const id of ["chat", "audit"]) document.getElementById(id).hidden = true;
  history.replaceState(null, "", location.pathname);
  Console.showSignIn();
};

Console.showSignIn = async () => {
  document.getElementById("sign-in").hidden = false;
  try {
    const settings = await PL.api("GET", "/v1/console", undefined, null);
    document.getElementById("dev-sign-in").hidden = !settings.development_tokens;
  } catch (e) {
    document.getElementById("sign-in-error").textContent = e.message;
  }
};

Console.route = () => {
  if (!Console.claims) return;
  const [name, query] = location.hash.slice(1).split("?");
  const view = name === "audit" ? "audit" : "chat";
  for (const id of ["chat", "audit"]) {
    document.getElementById(id).hidden = id !== view;
    document.getElementById("tab-" + id).classList.toggle("active", id === view);
  }
  if (view === "chat" && Console.claims.role !== "user") {
    document.getElementById("chat-error").textContent = "An operator token is nobody's chat account: sign in as a user to chat.";
  }
  if (view === "audit" && (Console.view !== "audit" || query)) {
    Audit.stop();
    Audit.start(Console.claims, new URLSearchParams(query || ""));
  }
  if (view !== "audit") Audit.stop();
  Console.view = view;
};

document.addEventListener("DOMContentLoaded", () => {
  Chat.wire();
  Audit.wire();
  window.addEventListener("hashchange", Console.route);
  document.getElementById("sign-out").addEventListener("click", Console.signOut);
  const fail = (e) => { document.getElementById("sign-in-error").textContent = e.message; };
  document.getElementById("dev-sign-in").addEventListener("submit", async (e) => {
    e.preventDefault();
    try {
      const minted = await PL.api("POST", "/v1/dev/tokens", {
        user: document.getElementById("dev-user").value.trim(), role: document.getElementById("dev-role").value,
      }, null);
      Console.signIn(minted.token);
    } catch (error) { fail(error); }
  });
  document.getElementById("token-sign-in").addEventListener("submit", (e) => {
    e.preventDefault();
    try { Console.signIn(document.getElementById("token-input").value.trim()); } catch (error) { fail(error); }
  });
  const token = PL.token();
  if (token) {
    try { Console.signIn(token); } catch (e) { sessionStorage.removeItem(PL.tokenKey); Console.showSignIn(); }
  } else {
    Console.showSignIn();
  }
});
