// A tiny dashboard on Linkgate, one module, no dependencies: sign-in and refresh, a dashboard
// whose questions follow viewerPermissions, GraphQL errors shown as they come, and live updates
// over graphql-transport-ws with the browser's own WebSocket. docs/spa.md explains each part.
//
// Settings come from the page (and its URL: ?gateway=http://host:port/graphql&apq=on).
// Tokens live in memory only: a reload signs you out, and no script can read them from storage.

const DEFAULT_GATEWAY = "http://127.0.0.1:8000/graphql";
const PROTOCOL = "graphql-transport-ws";
const REFRESH_LEAD_MS = 60_000; // refresh this long before the access token expires

// ---- Documents: fixed strings, never built at run time, so each has one SHA-256 (persisted
// queries) and can be listed in a trusted-documents manifest.

const SIGN_IN = `mutation SignIn($input: LoginInput!) {
  login(input: $input) { token expiresAt refreshToken userErrors { field code message } }
}`;
const REFRESH = `mutation Refresh($input: RefreshSessionInput!) {
  refreshSession(input: $input) { token expiresAt refreshToken userErrors { code message } }
}`;
const SIGN_OUT = `mutation SignOut { logout { ok } }`;
const DASHBOARD = `query Dashboard {
  viewer {
    user { name email }
    accounts(first: 20) { edges { node { id number name viewerPermissions } } }
  }
}`;
// Asked only for the accounts whose viewerPermissions allow it. A service's price is billing
// data (INVOICES_READ): where it is missing, the answer carries FORBIDDEN errors, shown below.
const DETAILS = `query Details($withCredits: [ID!]!, $withServices: [ID!]!) {
  credits: nodes(ids: $withCredits) { ... on Account { id creditBalance } }
  services: nodes(ids: $withServices) {
    ... on Account { id services { name monthlyPrice { amount currency } } }
  }
}`;
const LIVE = {
  TICKETS_READ: `subscription TicketUpdates {
    ticketUpdated { ticket { id number subject status } message { authorName body } }
  }`,
  CREDITS_READ: `subscription CreditUpdates {
    creditBalanceChanged { account { id number creditBalance } entry { id delta balanceAfter } }
  }`,
  INVOICES_READ: `subscription InvoiceUpdates {
    issued: invoiceIssued { id number status }
  }`,
};

// ---- The page.

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
$("gateway").value = params.get("gateway") || DEFAULT_GATEWAY;
$("apq").checked = params.get("apq") === "on";

function element(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, value);
  node.append(...children);
  return node;
}

function showSignIn(message = "") {
  $("dashboard").hidden = true;
  $("sign-in").hidden = false;
  $("sign-in-message").textContent = message;
}

// ---- GraphQL over HTTP, with automatic persisted queries when switched on.

class SessionEnded extends Error {}

function codeOf(error) {
  return error?.extensions?.code;
}

async function post(body, token) {
  const headers = { "content-type": "application/json" };
  if (token) headers.authorization = `Bearer ${token}`;
  let response;
  try {
    response = await fetch($("gateway").value, { method: "POST", headers, body: JSON.stringify(body) });
  } catch (error) {
    return { errors: [{ message: `The gateway cannot be reached (${error.message}).`, extensions: { code: "NETWORK" } }] };
  }
  try {
    return await response.json(); // GraphQL answers errors as JSON too (401, 400, 413, 429…)
  } catch {
    return { errors: [{ message: `HTTP ${response.status} without a GraphQL answer.`, extensions: { code: "NETWORK" } }] };
  }
}

async function sha256(text) {
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(text));
  return Array.from(new Uint8Array(digest), (byte) => byte.toString(16).padStart(2, "0")).join("");
}

// Apollo's protocol: the hash alone first; on PERSISTED_QUERY_NOT_FOUND the hash and the query,
// which the gateway then keeps. crypto.subtle exists only in a secure context (https, localhost).
async function send(query, variables, token) {
  if (!$("apq").checked || !globalThis.crypto?.subtle) return post({ query, variables }, token);
  const extensions = { persistedQuery: { version: 1, sha256Hash: await sha256(query) } };
  const first = await post({ variables, extensions }, token);
  const codes = (first.errors || []).map(codeOf);
  if (codes.includes("PERSISTED_QUERY_NOT_SUPPORTED")) $("apq").checked = false;
  if (codes.includes("PERSISTED_QUERY_NOT_FOUND") || codes.includes("PERSISTED_QUERY_NOT_SUPPORTED")) {
    return post({ query, variables, extensions }, token);
  }
  return first;
}

// ---- The session: a short access token, traded for a new pair before it expires.

let session = null; // { token, refreshToken, expiresAt (ms), refreshes }
let refreshTimer = null;
let refreshing = null;

function startSession(pair) {
  const refreshes = session ? session.refreshes + 1 : 0;
  session = { token: pair.token, refreshToken: pair.refreshToken, expiresAt: Date.parse(pair.expiresAt), refreshes };
  clearTimeout(refreshTimer);
  const lifetime = session.expiresAt - Date.now();
  const lead = Math.min(REFRESH_LEAD_MS, lifetime / 4);
  refreshTimer = setTimeout(() => refresh().catch(() => {}), Math.max(1_000, lifetime - lead));
  const time = new Date(session.expiresAt).toLocaleTimeString();
  $("session").textContent = `Signed in; the access token is renewed before ${time}.`
    + (refreshes ? ` Renewed ${refreshes}×.` : "");
  $("session").dataset.refreshes = String(refreshes);
}

function endSession(message) {
  clearTimeout(refreshTimer);
  session = null;
  live.close();
  showSignIn(message);
}

// One refresh at a time: a refresh token works once, and presenting a spent one ends the session.
function refresh() {
  refreshing ??= (async () => {
    const spent = session?.refreshToken;
    if (!spent) throw new SessionEnded();
    const answer = await send(REFRESH, { input: { refreshToken: spent } });
    const pair = answer.data?.refreshSession;
    if (!pair?.token && (answer.errors || []).some((error) => codeOf(error) === "NETWORK")) {
      // The refresh token was not spent (most likely): keep the session, try again shortly.
      refreshTimer = setTimeout(() => refresh().catch(() => {}), 5_000);
      throw new Error(answer.errors[0].message);
    }
    if (!pair?.token) {
      const why = pair?.userErrors?.[0]?.message || answer.errors?.[0]?.message || "it ended";
      endSession(`Your session ended (${why}). Sign in again.`);
      throw new SessionEnded();
    }
    startSession(pair);
    live.reconnect(); // the socket's token must not outlive the old one
  })().finally(() => { refreshing = null; });
  return refreshing;
}

// A signed-in request: an UNAUTHENTICATED answer gets one refresh and one retry, then sign-in.
async function request(query, variables) {
  if (!session) throw new SessionEnded();
  if (session.expiresAt - Date.now() < 5_000) await refresh();
  let answer = await send(query, variables, session.token);
  if ((answer.errors || []).some((error) => codeOf(error) === "UNAUTHENTICATED")) {
    await refresh();
    answer = await send(query, variables, session.token);
  }
  if ((answer.errors || []).some((error) => codeOf(error) === "UNAUTHENTICATED")) {
    endSession("Your session ended. Sign in again.");
    throw new SessionEnded();
  }
  return answer;
}

// ---- Errors: each GraphQL error with its code; FORBIDDEN names the permission it needs.

function showProblems(errors) {
  const list = $("problems");
  list.replaceChildren();
  const groups = new Map();
  for (const error of errors) {
    const code = codeOf(error) || "ERROR";
    const permission = error.extensions?.permission;
    const key = `${code} ${permission || ""} ${error.message}`;
    const retryAfter = error.extensions?.retryAfter; // RATE_LIMITED: seconds to wait
    const group = groups.get(key) || { code, permission, retryAfter, message: error.message, paths: [] };
    if (error.path) group.paths.push(error.path.join("."));
    groups.set(key, group);
  }
  for (const group of groups.values()) {
    const needs = group.permission ? ` (needs ${group.permission})` : "";
    const wait = group.retryAfter ? ` Try again in ${group.retryAfter} s.` : "";
    const where = group.paths.length ? ` ×${group.paths.length}, e.g. at ${group.paths[0]}` : "";
    list.append(element("li", { "data-code": group.code }, element("code", {}, group.code), `${needs}: ${group.message}${wait}${where}`));
  }
  if (!groups.size) list.append(element("li", { class: "muted" }, "None."));
}

// ---- The dashboard.

const balances = new Map(); // account id → its balance element

function money(price) {
  return `${(price.amount / 100).toFixed(2)} ${price.currency}`;
}

async function loadDashboard() {
  const problems = [];
  const answer = await request(DASHBOARD);
  problems.push(...(answer.errors || []));
  const viewer = answer.data?.viewer;
  if (!viewer) {
    showProblems(problems);
    return;
  }
  $("who").textContent = `${viewer.user.name} <${viewer.user.email}>`;
  const accounts = viewer.accounts.edges.map((edge) => edge.node);
  const allowed = (permission) => accounts.filter((a) => a.viewerPermissions.includes(permission)).map((a) => a.id);
  const details = await request(DETAILS, { withCredits: allowed("CREDITS_READ"), withServices: allowed("SERVICES_READ") });
  problems.push(...(details.errors || []));
  const byId = (list) => new Map((list || []).filter(Boolean).map((node) => [node.id, node]));
  const credits = byId(details.data?.credits);
  const services = byId(details.data?.services);

  balances.clear();
  $("accounts").replaceChildren(...accounts.map((account) => {
    const card = element("div", { class: "account", "data-number": account.number },
      element("h3", {}, `${account.name} `, element("span", { class: "muted" }, account.number)));
    // Shown only with CREDITS_READ: the permission list says so before anything is asked.
    if (account.viewerPermissions.includes("CREDITS_READ")) {
      const balance = element("span", { class: "balance" }, `${credits.get(account.id)?.creditBalance ?? "?"}`);
      balances.set(account.id, balance);
      card.append(element("p", { "data-balance": "" }, "Credit balance: ", balance, " credits"));
    }
    const offered = services.get(account.id)?.services || [];
    if (offered.length) {
      card.append(element("ul", {}, ...offered.map((service) => element("li", {},
        service.name, " — ", service.monthlyPrice ? `${money(service.monthlyPrice)} a month` : "price not shown"))));
    }
    card.append(element("p", { class: "muted" }, `Your permissions: ${account.viewerPermissions.join(", ") || "none"}`));
    return card;
  }));
  showProblems(problems);
  live.want(new Set(accounts.flatMap((account) => account.viewerPermissions)));
}

function showEvent(text) {
  $("events").prepend(element("li", {}, `${new Date().toLocaleTimeString()} ${text}`));
}

// ---- Live updates: graphql-transport-ws over the browser's WebSocket.
//
// connection_init carries the token (never the URL); connection_ack opens the way for
// subscribe {id, payload}; next/error/complete answer per id; ping is answered with pong.
// Close codes: 4401 the session's token expired or was revoked while open, 4403 no valid token
// at connection_init: refresh, then reconnect (or sign in when the refresh fails, or when the
// fresh token is refused too); anything else: reconnect after a growing pause.

class LiveSocket {
  constructor() {
    this.socket = null;
    this.wanted = new Set(); // permissions whose subscription this page wants
    this.retry = 0;
    this.timer = null;
    this.refused = false; // refused at connection_init since the last ack
  }

  url() {
    return $("gateway").value.replace(/^http/, "ws");
  }

  want(permissions) {
    const wanted = new Set(Object.keys(LIVE).filter((permission) => permissions.has(permission)));
    const same = wanted.size === this.wanted.size && [...wanted].every((p) => this.wanted.has(p));
    this.wanted = wanted;
    if (!same || !this.socket) this.reconnect();
  }

  status(text) {
    $("live-status").textContent = `(${text})`;
    $("live-status").dataset.state = text;
  }

  reconnect() {
    this.close();
    if (session && this.wanted.size) this.open();
  }

  close() {
    clearTimeout(this.timer);
    if (this.socket) {
      const socket = this.socket;
      this.socket = null;
      socket.onclose = null;
      socket.close(1000, "Reconnecting");
    }
    this.status("not connected");
  }

  open() {
    const socket = new WebSocket(this.url(), PROTOCOL);
    this.socket = socket;
    this.status("connecting");
    const send = (message) => socket.send(JSON.stringify(message));
    socket.onopen = () => send({ type: "connection_init", payload: { authorization: `Bearer ${session.token}` } });
    socket.onmessage = (event) => {
      let message;
      try {
        message = JSON.parse(event.data); // the protocol's messages are JSON text frames
      } catch {
        showEvent(`The gateway sent a frame that is not JSON text (${typeof event.data}).`);
        return;
      }
      switch (message.type) {
        case "connection_ack":
          this.retry = 0;
          this.refused = false;
          this.status("live");
          for (const permission of this.wanted) send({ id: permission, type: "subscribe", payload: { query: LIVE[permission] } });
          break;
        case "ping":
          send({ type: "pong" });
          break;
        case "next":
          this.onNext(message.payload);
          break;
        case "error":
          showProblems(message.payload);
          break;
        case "complete":
          showEvent(`The gateway ended the ${message.id} subscription.`);
          break;
      }
    };
    socket.onclose = (event) => {
      if (this.socket !== socket) return;
      this.socket = null;
      this.status(`closed ${event.code}`);
      if (event.code === 4403 && this.refused) {
        endSession(`The live connection was refused (${event.reason || "no valid token"}). Sign in again.`);
      } else if (event.code === 4401 || event.code === 4403) {
        // The token expired or the session was revoked (while open: 4401; at connection_init:
        // 4403). A refresh tells which: a new token (reconnect) or the end (sign-in).
        this.refused = event.code === 4403;
        refresh().catch(() => {});
      } else if (session) {
        const pause = Math.min(30_000, 1_000 * 2 ** this.retry++);
        this.timer = setTimeout(() => this.reconnect(), pause);
      }
    };
  }

  onNext(payload) {
    if (payload.errors) showProblems(payload.errors);
    const data = payload.data || {};
    if (data.ticketUpdated) {
      const { ticket, message } = data.ticketUpdated;
      showEvent(`${ticket.number} “${ticket.subject}” is ${ticket.status}`
        + (message ? `: ${message.authorName} wrote “${message.body}”` : ""));
    }
    if (data.creditBalanceChanged) {
      const { account, entry } = data.creditBalanceChanged;
      const balance = balances.get(account.id);
      if (balance) balance.textContent = String(account.creditBalance);
      showEvent(`${account.number}: ${entry.delta > 0 ? "+" : ""}${entry.delta} credits, now ${entry.balanceAfter}`);
    }
    if (data.issued) showEvent(`Invoice ${data.issued.number} issued (${data.issued.status})`);
  }
}

const live = new LiveSocket();

// ---- Wiring.

async function signIn(event) {
  event.preventDefault();
  $("sign-in-message").textContent = "";
  const input = { email: $("email").value, password: $("password").value };
  if ($("otp").value) input.otp = $("otp").value;
  const answer = await send(SIGN_IN, { input });
  const login = answer.data?.login;
  if (!login?.token) {
    const problem = login?.userErrors?.[0] || answer.errors?.[0];
    // OTP_REQUIRED: this login has two-factor sign-in; ask for the code and try again.
    if (problem?.code === "OTP_REQUIRED") $("otp-field").hidden = false;
    const wait = problem?.extensions?.retryAfter ? ` Try again in ${problem.extensions.retryAfter} s.` : "";
    $("sign-in-message").textContent = `${problem?.code || codeOf(problem) || "ERROR"}: ${problem?.message || "Sign-in failed."}${wait}`;
    return;
  }
  session = null;
  startSession(login);
  $("password").value = "";
  $("otp").value = "";
  $("sign-in").hidden = true;
  $("dashboard").hidden = false;
  await guarded(loadDashboard);
}

async function signOut() {
  if (session) await post({ query: SIGN_OUT }, session.token);
  endSession("Signed out.");
}

// SessionEnded has already brought the sign-in form back; anything else is shown.
async function guarded(action) {
  try {
    await action();
  } catch (error) {
    if (!(error instanceof SessionEnded)) showProblems([{ message: String(error), extensions: { code: "CLIENT" } }]);
  }
}

$("sign-in-form").addEventListener("submit", (event) => guarded(() => signIn(event)));
$("reload").addEventListener("click", () => guarded(loadDashboard));
$("sign-out").addEventListener("click", () => guarded(signOut));
showSignIn();
