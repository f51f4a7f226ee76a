// p2pshare client UI: account, my files, network search, downloads and the
// status bar, talking to this node's client API (/api/client/*). It keeps the
// token in localStorage (one login for every tab of this node), and never puts user or peer text into HTML
// markup: names are always text nodes (see common.js).
"use strict";

(function () {
  const P = window.P2P;
  const { el, $, $$, api, setChildren } = P;

  const TOKEN_KEY = "p2pshare.client.token";
  const USER_KEY = "p2pshare.client.user";
  const PAGE_SIZE = 50;
  const STATUS_EVERY_MS = 2000;
  const FETCH_ACTIVE_MS = 500; // the issue asks for ≥ 2 updates a second
  const FETCH_IDLE_MS = 3000;
  const HASHING_RECHECK_MS = 1000;
  const ACTIVE = new Set(["pending", "downloading", "verifying"]);
  // A paused download polls slowly but can still be resumed or cancelled.
  const CANCELLABLE = new Set(["pending", "downloading", "paused"]);
  const VIEWS = ["files", "network", "downloads"];

  const state = {
    token: null,
    user: null,
    hostname: null,
    view: "files",
    files: [],
    filesKey: "",
    foldersKey: "",
    net: { q: "", offset: 0, total: 0, nextOffset: null, loaded: false },
    fetches: new Map(),
    announced: new Set(),
    fetchesLoaded: false,
    timers: { status: null, fetches: null, files: null },
    generation: 0, // bumps on logout so late answers from a previous session are dropped
  };

  // The views in files.js and downloads.js share this scope's state and
  // helpers through one namespace, and add their own entry points to it.
  const C = (window.P2PClient = {
    state, authed, keepFocus, setView,
    PAGE_SIZE, HASHING_RECHECK_MS, FETCH_ACTIVE_MS, FETCH_IDLE_MS, ACTIVE, CANCELLABLE,
  });

  // ---- Session -----------------------------------------------------------

  function authed(method, path, body) {
    return api(method, path, body, state.token).then((res) => {
      if (res.status === 401 && state.token) {
        endSession("Your session has ended. Please log in again.");
      }
      return res;
    });
  }

  function saveSession(token, user) {
    state.token = token;
    state.user = user || null;
    P.keep.set(TOKEN_KEY, token);
    P.keep.set(USER_KEY, JSON.stringify(user || {}));
  }

  function clearSession() {
    state.token = null;
    state.user = null;
    state.hostname = null;
    P.keep.remove(TOKEN_KEY);
    P.keep.remove(USER_KEY);
  }

  function stopTimers() {
    for (const key of Object.keys(state.timers)) {
      clearTimeout(state.timers[key]);
      state.timers[key] = null;
    }
  }

  function endSession(message) {
    state.generation += 1;
    stopTimers();
    clearSession();
    state.fetches.clear();
    state.announced.clear();
    state.fetchesLoaded = false;
    state.trouble = null;
    state.troubleReady = false;
    state.files = [];
    state.filesKey = "";
    state.foldersKey = "";
    state.following = false;
    setChildren($("#folders-list"));
    $("#folders-card").hidden = true;
    state.net = { q: "", offset: 0, total: 0, nextOffset: null, loaded: false };
    setChildren($("#files-body"));
    setChildren($("#network-body"));
    setChildren($("#downloads-list"));
    $("#search-q").value = "";
    showAuth(message, "info");
  }

  /** Starts the node-side session (peer port + REGISTER) for a fresh token. */
  async function startSession(msgNode) {
    const res = await api("POST", "/api/client/init", {}, state.token);
    // 409 means this user's session is already running on the node.
    if (res.ok || res.status === 409) {
      if (res.ok && res.data && res.data.client) {
        state.hostname = res.data.client.hostname || null;
        if (!state.user || !state.user.display_name) {
          state.user = Object.assign({}, state.user, {
            username: res.data.client.username,
            display_name: res.data.client.display_name,
          });
          P.keep.set(USER_KEY, JSON.stringify(state.user));
        }
      }
      showApp();
      return true;
    }
    const why = res.error || "unknown error";
    clearSession();
    P.formMessage(msgNode, "Logged in, but your sharing session could not start: " + why, "error");
    return false;
  }

  async function resume() {
    state.token = P.keep.get(TOKEN_KEY);
    try {
      state.user = JSON.parse(P.keep.get(USER_KEY) || "null");
    } catch (_) {
      state.user = null;
    }
    if (!state.token) {
      showAuth();
      return;
    }
    const res = await api("GET", "/api/client/status", undefined, state.token);
    if (res.status === 401) {
      clearSession();
      showAuth("Your session has ended. Please log in again.", "info");
      return;
    }
    if (res.ok && res.data && res.data.peer_port) {
      state.hostname = res.data.hostname || null;
      showApp();
      return;
    }
    showAuth();
    await startSession($("#login-msg"));
  }

  // ---- Sign-in screen ----------------------------------------------------

  const USERNAME_RE = /^[A-Za-z0-9_.-]{3,32}$/;

  function showAuth(message, kind) {
    $("#app-view").hidden = true;
    $("#auth-view").hidden = false;
    document.title = "p2pshare — Log in";
    P.formMessage($("#login-msg"), message || "", kind || "error");
    P.formMessage($("#register-msg"), "");
    selectAuthTab("login", false);
    const user = $("#login-username");
    if (!user.value) user.focus();
    else $("#login-password").focus();
  }

  function selectAuthTab(which, focus) {
    const isLogin = which === "login";
    const tabs = { login: $("#tab-login"), register: $("#tab-register") };
    tabs.login.setAttribute("aria-selected", String(isLogin));
    tabs.register.setAttribute("aria-selected", String(!isLogin));
    tabs.login.tabIndex = isLogin ? 0 : -1;
    tabs.register.tabIndex = isLogin ? -1 : 0;
    $("#login-form").hidden = !isLogin;
    $("#register-form").hidden = isLogin;
    if (focus) (isLogin ? $("#login-username") : $("#reg-username")).focus();
  }

  function wireAuth() {
    $("#tab-login").addEventListener("click", () => selectAuthTab("login", true));
    $("#tab-register").addEventListener("click", () => selectAuthTab("register", true));
    for (const tab of [$("#tab-login"), $("#tab-register")]) {
      tab.addEventListener("keydown", (ev) => {
        if (ev.key === "ArrowLeft" || ev.key === "ArrowRight") {
          ev.preventDefault();
          const toRegister = tab.id === "tab-login";
          selectAuthTab(toRegister ? "register" : "login", false);
          (toRegister ? $("#tab-register") : $("#tab-login")).focus();
        }
      });
    }

    $("#login-form").addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const msg = $("#login-msg");
      const username = $("#login-username").value.trim();
      const password = $("#login-password").value;
      if (!username || !password) {
        P.formMessage(msg, "Enter your username and password.");
        return;
      }
      const btn = $("#login-submit");
      P.setBusy(btn, true, "Logging in…");
      P.formMessage(msg, "");
      const res = await api("POST", "/api/client/login", { username, password });
      if (!res.ok || !res.data || !res.data.token) {
        P.setBusy(btn, false);
        P.formMessage(msg, res.status === 401 ? "Wrong username or password." : res.error);
        $("#login-password").select();
        return;
      }
      saveSession(res.data.token, res.data.user);
      P.setBusy(btn, true, "Connecting…");
      await startSession(msg);
      P.setBusy(btn, false);
      $("#login-password").value = "";
    });

    $("#register-form").addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const msg = $("#register-msg");
      const username = $("#reg-username").value.trim();
      const displayName = $("#reg-display").value.trim();
      const password = $("#reg-password").value;
      if (!USERNAME_RE.test(username)) {
        P.formMessage(msg, "Usernames are 3–32 characters: letters, digits, “_”, “.” or “-”.");
        $("#reg-username").focus();
        return;
      }
      if (password.length < 8) {
        P.formMessage(msg, "The password is too short: use at least 8 characters.");
        $("#reg-password").focus();
        return;
      }
      const btn = $("#register-submit");
      P.setBusy(btn, true, "Creating account…");
      P.formMessage(msg, "");
      const res = await api("POST", "/api/client/register", {
        username,
        password,
        display_name: displayName || username,
      });
      if (!res.ok || !res.data || !res.data.token) {
        P.setBusy(btn, false);
        if (res.status === 409) {
          P.formMessage(msg, "The username “" + username + "” is already taken. Please choose another one.");
          $("#reg-username").select();
        } else {
          P.formMessage(msg, res.error);
        }
        return;
      }
      saveSession(res.data.token, res.data.user);
      P.setBusy(btn, true, "Connecting…");
      const started = await startSession(msg);
      P.setBusy(btn, false);
      if (started) {
        $("#reg-password").value = "";
        $("#register-form").reset();
      }
    });
  }

  // ---- App shell ---------------------------------------------------------

  function showApp() {
    $("#auth-view").hidden = true;
    $("#app-view").hidden = false;
    const name = (state.user && (state.user.display_name || state.user.username)) || "";
    $("#user-name").textContent = name;
    $("#user-avatar").textContent = name ? name.trim().charAt(0).toUpperCase() : "?";
    const fromHash = location.hash.replace("#", "");
    setView(VIEWS.includes(fromHash) ? fromHash : "files", false);
    pollStatus();
    C.pollFetches();
  }

  function setView(name, focus) {
    state.view = name;
    for (const v of VIEWS) {
      $("#view-" + v).hidden = v !== name;
      const link = $("#nav-" + v);
      if (v === name) link.setAttribute("aria-current", "page");
      else link.removeAttribute("aria-current");
    }
    const titles = { files: "My files", network: "Network", downloads: "Downloads" };
    document.title = "p2pshare — " + titles[name];
    if (location.hash !== "#" + name) history.replaceState(null, "", "#" + name);
    if (name === "files") C.loadFiles();
    if (name === "network") loadNetwork();
    if (name === "downloads") C.renderFetches();
    if (focus) $("#main").focus();
  }

  function wireShell() {
    for (const link of $$(".navlink")) {
      link.addEventListener("click", () => setView(link.dataset.view, true));
    }
    $("#downloads-to-network").addEventListener("click", (ev) => {
      ev.preventDefault();
      setView("network", true);
    });
    window.addEventListener("hashchange", () => {
      const name = location.hash.replace("#", "");
      if (state.token && VIEWS.includes(name) && name !== state.view) setView(name, false);
    });
    $("#logout-btn").addEventListener("click", async () => {
      const btn = $("#logout-btn");
      P.setBusy(btn, true, "Logging out…");
      await api("POST", "/api/client/logout", {}, state.token);
      P.setBusy(btn, false);
      endSession("You have logged out.");
    });
  }

  // ---- Status bar --------------------------------------------------------

  async function pollStatus() {
    clearTimeout(state.timers.status);
    const gen = state.generation;
    const res = await authed("GET", "/api/client/status");
    if (gen !== state.generation || !state.token) return;
    renderStatus(res);
    state.timers.status = setTimeout(pollStatus, STATUS_EVERY_MS);
  }

  function statusItem(dotClass, text, title) {
    return [el("span", { class: "dot " + dotClass, "aria-hidden": "true" }),
      el("span", { class: "sb-text", title: title || null }, text)];
  }

  function renderStatus(res) {
    const coord = $("#sb-coordinator");
    if (!res.ok || !res.data) {
      setChildren(coord, statusItem("dot-danger",
        res.status === 0 ? "Cannot reach this p2pshare node" : "Status unavailable: " + res.error));
      setChildren($("#sb-heartbeat"));
      setChildren($("#sb-port"));
      return;
    }
    const d = res.data;
    if (d.hostname) state.hostname = d.hostname;
    const c = d.coordinator || {};
    const addr = c.address ? " (" + c.address + ")" : "";
    if (c.state === "connected") {
      setChildren(coord, statusItem("dot-ok", "Connected to coordinator" + addr));
    } else if (c.state === "reconnecting") {
      const wait = typeof c.retry_in_s === "number" ? " in " + P.formatDuration(c.retry_in_s) : "…";
      setChildren(coord, statusItem("dot-warn", "Reconnecting to coordinator" + wait,
        c.last_error ? "Last error: " + c.last_error : null));
    } else {
      setChildren(coord, statusItem("dot-warn", "Connecting to coordinator" + addr + "…",
        c.last_error ? "Last error: " + c.last_error : null));
    }
    const hb = d.heartbeat || {};
    const hbState = hb.state || "idle";
    const every = hb.mode === "connection" ? " · sent on change"
      : typeof hb.interval_s === "number" ? " · every " + Math.round(hb.interval_s) + " s" : "";
    setChildren($("#sb-heartbeat"), "Heartbeat: " + hbState + every);
    setChildren($("#sb-port"), d.peer_port ? "Peer port " + d.peer_port : "No peer port");
    const counts = d.counts || {};
    const parts = [];
    if (typeof counts.published_files === "number") parts.push(counts.published_files + " shared");
    if (counts.uploads) parts.push(P.plural(counts.uploads, "upload", "uploads"));
    const host = d.hostname ? "Host " + d.hostname : "";
    setChildren($("#sb-host"), [host, parts.length ? " · " + parts.join(" · ") : ""].join(""));
    announceTrouble(Array.isArray(d.attention) ? d.attention : []);
  }

  /** A shared file that changed or vanished on disk is taken off the
   *  network by the node; say so once, whatever page is open. */
  function announceTrouble(list) {
    const seen = state.trouble || (state.trouble = new Map());
    const now = new Set();
    for (const f of list) {
      const key = f.name + "\u0000" + f.status;
      now.add(key);
      if (seen.has(key)) continue;
      seen.set(key, true);
      if (!state.troubleReady) continue; // the first poll only learns what is already known
      P.toast(f.status === "changed"
        ? "“" + f.name + "” changed on disk, so it is no longer shared. Publish it again from My files to share the new version."
        : "“" + f.name + "” is gone from its folder, so it is no longer shared.", "error");
    }
    for (const key of Array.from(seen.keys())) if (!now.has(key)) seen.delete(key);
    state.troubleReady = true;
    renderNotices(list);
    const badge = $("#nav-files-badge");
    if (badge) {
      badge.hidden = list.length === 0;
      badge.textContent = String(list.length);
      badge.title = list.length ? P.plural(list.length, "file needs", "files need") + " your attention" : "";
    }
  }

  /** The banner on every page while a shared file is changed or missing:
   *  what happened, and for a changed file "Publish again" (its new content). */
  function renderNotices(list) {
    const banner = $("#notice-banner");
    if (!banner) return;
    banner.hidden = list.length === 0;
    const shown = list.slice(0, 3);
    const items = shown.map((f) => {
      const name = String(f.name);
      const changed = f.status === "changed";
      const button = changed ? el("button", {
        type: "button", class: "btn btn-warn btn-small", dataset: { notice: name, focusKey: "notice:" + name },
        on: { click: (ev) => publishAgain(name, ev.currentTarget) },
      }, "Publish again") : null;
      return el("li", { dataset: { file: name } },
        el("span", { class: "notice-text" }, "“", el("strong", {}, name), "” ",
          changed ? "changed on disk, so it is no longer shared." : "is gone from its folder, so it is no longer shared."),
        button);
    });
    if (list.length > shown.length) {
      items.push(el("li", {}, el("span", { class: "notice-text" },
        P.plural(list.length - shown.length, "more file needs", "more files need") + " your attention in My files.")));
    }
    keepFocus(() => setChildren(banner, list.length ? el("ul", {}, items) : null));
  }

  /** Publishes a changed file's new content: waits while the node hashes it,
   *  and goes ahead (force) when the only look-alike is the user's own old copy. */
  async function publishAgain(name, btn) {
    P.setBusy(btn, true, "Publishing…");
    const deadline = Date.now() + 60_000;
    let res = await authed("POST", "/api/client/publish", { fname: name });
    while (res.status === 409 && res.data && res.data.hashing && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 500));
      res = await authed("POST", "/api/client/publish", { fname: name });
    }
    const dups = res.status === 409 && res.data && Array.isArray(res.data.duplicates) ? res.data.duplicates : null;
    if (dups && dups.every((d) => d.hostname === state.hostname)) {
      res = await authed("POST", "/api/client/publish", { fname: name, force: true });
    }
    if (btn.isConnected) P.setBusy(btn, false);
    if (res.ok) {
      P.toast("“" + name + "” is shared again, with its new content.", "ok");
    } else if (res.status === 409 && res.data && Array.isArray(res.data.duplicates)) {
      await C.publishFile(name, false, null); // other people share the same: the usual dialog
    } else if (res.status === 409 && res.data && res.data.hashing) {
      P.toast("“" + name + "” is still being read. Try again in a moment.", "info");
    } else {
      P.toast("Could not publish “" + name + "” again: " + res.error, "error");
    }
    if (state.view === "files") C.loadFiles();
    pollStatus();
  }

  // ---- Shared by the views ---

  function keepFocus(render) {
    const active = document.activeElement;
    const key = active && active.dataset ? active.dataset.focusKey : null;
    render();
    if (key) {
      const again = $$("[data-focus-key]").find((n) => n.dataset.focusKey === key);
      if (again && !again.disabled) again.focus();
    }
  }

  // ---- Network -----------------------------------------------------------

  async function loadNetwork() {
    const gen = state.generation;
    const n = state.net;
    const qs = new URLSearchParams({ q: n.q, offset: String(n.offset), limit: String(PAGE_SIZE) });
    const btn = $("#search-submit");
    P.setBusy(btn, true, "Searching…");
    const res = await authed("GET", "/api/client/network-files?" + qs.toString());
    P.setBusy(btn, false);
    if (gen !== state.generation || !state.token) return;
    const msg = $("#network-msg");
    // The results card is hidden while there are no results to show, so an
    // error never sits above an empty card.
    const card = $("#network-table").closest(".table-card");
    if (!res.ok) {
      P.formMessage(msg, "Could not search the network: " + res.error);
      if (card) card.hidden = true;
      return;
    }
    if (card) card.hidden = false;
    P.formMessage(msg, "");
    const files = Array.isArray(res.data.files) ? res.data.files : [];
    n.total = typeof res.data.total === "number" ? res.data.total : files.length;
    n.nextOffset = typeof res.data.next_offset === "number" ? res.data.next_offset : null;
    n.loaded = true;
    renderNetwork(files);
  }

  function renderNetwork(files) {
    const n = state.net;
    const empty = files.length === 0;
    $("#network-table").hidden = empty;
    $("#network-empty").hidden = !empty;
    if (empty) {
      $("#network-empty-title").textContent = n.q ? "Nothing found" : "Nothing shared yet";
      $("#network-empty-text").textContent = n.q
        ? "No published file name contains “" + n.q + "”."
        : "When someone publishes a file, it appears here.";
    }
    keepFocus(() => setChildren($("#network-body"), files.map(networkRow)));
    const pager = $("#network-pager");
    pager.hidden = empty;
    const first = n.offset + 1;
    const last = n.offset + files.length;
    $("#network-range").textContent = empty ? "" :
      first + "–" + last + " of " + P.plural(n.total, "file", "files");
    $("#network-prev").disabled = n.offset === 0;
    $("#network-next").disabled = n.nextOffset === null;
  }

  function hostLabel(h) {
    const name = h.display_name && h.display_name !== h.hostname
      ? h.display_name + " (" + h.hostname + ")"
      : String(h.hostname);
    return h.hostname === state.hostname ? name + " — you" : name;
  }

  function networkRow(f) {
    const hosts = Array.isArray(f.hosts) ? f.hosts : [];
    const online = hosts.filter((h) => h.online);
    const name = String(f.name);
    return el("tr", { dataset: { name } },
      el("td", {},
        el("div", { class: "fname" }, name),
        el("div", { class: "sub" }, "modified " + P.formatTime(f.modified))),
      el("td", { class: "num", "data-label": "Size" }, P.formatBytes(f.size)),
      el("td", { "data-label": "Shared by" },
        el("ul", { class: "hosts" }, hosts.map((h) =>
          el("li", { class: "host" },
            el("span", { class: "dot " + (h.online ? "dot-ok" : "dot-off"), "aria-hidden": "true" }),
            el("span", { class: "host-name" }, hostLabel(h)),
            el("span", { class: "host-state" }, h.online ? "online" : "offline"))))),
      el("td", { "data-label": "SHA-256" },
        el("span", { class: "hash", title: f.sha256 || null }, P.shortHash(f.sha256))),
      el("td", { class: "actions" }, el("div", { class: "actions-inner" },
        el("button", {
          type: "button", class: "btn btn-primary btn-small",
          dataset: { action: "fetch", focusKey: "fetch:" + name + ":" + (f.sha256 || "") },
          "aria-label": "Fetch " + name,
          disabled: online.length === 0,
          title: online.length === 0 ? "No computer with this file is online" : null,
          on: { click: () => fetchDialog(f) },
        }, "Fetch"))));
  }

  function wireNetwork() {
    $("#search-form").addEventListener("submit", (ev) => {
      ev.preventDefault();
      state.net.q = $("#search-q").value.trim();
      state.net.offset = 0;
      loadNetwork();
    });
    $("#network-prev").addEventListener("click", () => {
      state.net.offset = Math.max(0, state.net.offset - PAGE_SIZE);
      loadNetwork();
    });
    $("#network-next").addEventListener("click", () => {
      if (state.net.nextOffset !== null) {
        state.net.offset = state.net.nextOffset;
        loadNetwork();
      }
    });
  }

  function fetchDialog(f) {
    const hosts = (Array.isArray(f.hosts) ? f.hosts : []).filter((h) => h.online);
    const hostSelect = el("select", { id: "fetch-host" },
      el("option", { value: "" }, "Any computer that has it"),
      hosts.map((h) => el("option", { value: h.hostname }, hostLabel(h))));
    const pathField = P.field("Save to (optional)", {
      id: "fetch-save-path", name: "save_path", autocomplete: "off", spellcheck: "false",
      placeholder: "Leave empty for your downloads folder",
    }, "A full file path, e.g. /home/me/Downloads/" + f.name);
    const overwrite = el("input", { type: "checkbox", id: "fetch-overwrite" });
    // Sharing what you fetched is the default: a popular file gains sources.
    const share = el("input", { type: "checkbox", id: "fetch-share", checked: true });
    const msg = el("p", { class: "form-msg", role: "alert", hidden: true });
    return P.openDialog({
      id: "fetch-dialog",
      title: "Fetch a file",
      body: [
        el("dl", { class: "kv" },
          el("dt", {}, "File"), el("dd", { class: "fname" }, String(f.name)),
          el("dt", {}, "Size"), el("dd", {}, P.formatBytes(f.size)),
          el("dt", {}, "SHA-256"), el("dd", { class: "hash" }, f.sha256 || "—")),
        el("div", { class: "field" }, el("label", { for: "fetch-host" }, "From"), hostSelect),
        pathField.wrap,
        el("div", { class: "field field-check" }, overwrite,
          el("label", { for: "fetch-overwrite" }, "Replace a file that already exists there")),
        el("div", { class: "field field-check" }, share,
          el("label", { for: "fetch-share" }, "Share it once downloaded (add it to my files and publish it)")),
        msg,
      ],
      actions: [
        { label: "Cancel", value: null },
        { label: "Start download", value: "go", kind: "primary", submit: true, id: "fetch-start" },
      ],
      onSubmit: async (form) => {
        // The hash says which file: others may share its name.
        const body = { fname: f.name };
        if (f.sha256) body.sha256 = f.sha256;
        const savePath = pathField.input.value.trim();
        if (savePath) body.save_path = savePath;
        if (hostSelect.value) body.hostname = hostSelect.value;
        if (overwrite.checked) body.overwrite = true;
        body.share = share.checked;
        const btn = form.querySelector("#fetch-start");
        P.setBusy(btn, true, "Starting…");
        const res = await authed("POST", "/api/client/fetch", body);
        P.setBusy(btn, false);
        if (!res.ok) {
          P.formMessage(msg, res.error);
          return false;
        }
        P.toast("Downloading “" + f.name + "”. Follow it in Downloads.", "ok");
        C.pollFetches();
        return "started";
      },
    });
  }

  // ---- Start -------------------------------------------------------------

  function start() {
    // One login for every tab: a logout or a login in another tab of this
    // node's UI is followed here.
    window.addEventListener("storage", (ev) => {
      if (ev.key !== TOKEN_KEY) return;
      if (!ev.newValue && state.token) endSession("You logged out in another tab.");
      else if (ev.newValue && ev.newValue !== state.token) resume();
    });
    wireAuth();
    wireShell();
    C.wireFiles();
    C.wireDownloads();
    wireNetwork();
    resume();
  }

  // After every deferred script (files.js, downloads.js) has run.
  if (document.readyState === "complete") start();
  else document.addEventListener("DOMContentLoaded", start);
})();
