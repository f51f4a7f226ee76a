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
    net: { q: "", offset: 0, total: 0, nextOffset: null, loaded: false },
    fetches: new Map(),
    announced: new Set(),
    fetchesLoaded: false,
    timers: { status: null, fetches: null, files: null },
    generation: 0, // bumps on logout so late answers from a previous session are dropped
  };

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
    pollFetches();
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
    if (name === "files") loadFiles();
    if (name === "network") loadNetwork();
    if (name === "downloads") renderFetches();
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
    const every = typeof hb.interval_s === "number" ? " · every " + Math.round(hb.interval_s) + " s" : "";
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
    const badge = $("#nav-files-badge");
    if (badge) {
      badge.hidden = list.length === 0;
      badge.textContent = String(list.length);
      badge.title = list.length ? P.plural(list.length, "file needs", "files need") + " your attention" : "";
    }
  }

  // ---- My files ----------------------------------------------------------

  async function loadFiles() {
    clearTimeout(state.timers.files);
    const gen = state.generation;
    const res = await authed("GET", "/api/client/local-files");
    if (gen !== state.generation || !state.token) return;
    if (!res.ok) {
      P.formMessage($("#add-msg"), "Could not load your files: " + res.error);
      return;
    }
    const files = Array.isArray(res.data.files) ? res.data.files : [];
    state.files = files;
    renderFiles(files);
    // Hashing runs on the node in the background; look again until it is done.
    if (files.some((f) => f.hashing) && state.view === "files") {
      state.timers.files = setTimeout(loadFiles, HASHING_RECHECK_MS);
    }
  }

  /** Re-renders a list, keeping keyboard focus on the same logical control. */
  function keepFocus(render) {
    const active = document.activeElement;
    const key = active && active.dataset ? active.dataset.focusKey : null;
    render();
    if (key) {
      const again = $$("[data-focus-key]").find((n) => n.dataset.focusKey === key);
      if (again && !again.disabled) again.focus();
    }
  }

  function renderFiles(files) {
    const key = JSON.stringify(files);
    if (key === state.filesKey) return;
    state.filesKey = key;
    $("#files-empty").hidden = files.length > 0;
    $("#files-table").hidden = files.length === 0;
    keepFocus(() => setChildren($("#files-body"), files.map(fileRow)));
  }

  function sharingBadge(f) {
    if (f.status === "missing") return el("span", { class: "badge badge-danger" }, "Missing on disk");
    if (f.status === "changed") return el("span", { class: "badge badge-warn" }, "Changed since added");
    if (f.hash_error) {
      return el("span", { class: "badge badge-danger", title: String(f.hash_error) }, "Cannot read file");
    }
    if (f.changing && !f.sha256) {
      return el("span", {
        class: "badge badge-warn",
        title: "The file changed each time it was read; it is hashed again less and less often until it stops changing",
      }, "Keeps changing");
    }
    if (f.hashing) {
      return el("span", { class: "badge badge-info" },
        el("span", { class: "spinner", "aria-hidden": "true" }), "Hashing…");
    }
    if (f.is_published) return el("span", { class: "badge badge-ok" }, "Published");
    return el("span", { class: "badge" }, "Not published");
  }

  function fileRow(f) {
    const name = String(f.name);
    const publishBtn = f.is_published
      ? el("button", {
        type: "button", class: "btn btn-ghost btn-small",
        dataset: { action: "unpublish", focusKey: "share:" + name },
        "aria-label": "Unpublish " + name,
        on: { click: (ev) => unpublishFile(name, ev.currentTarget) },
      }, "Unpublish")
      : el("button", {
        type: "button", class: "btn btn-primary btn-small",
        dataset: { action: "publish", focusKey: "share:" + name },
        "aria-label": "Publish " + name,
        disabled: f.status === "missing",
        // The node answers a publish once the file's hash is done.
        title: f.hashing ? "Publishes as soon as the SHA-256 is computed" : null,
        on: { click: (ev) => publishFile(name, false, ev.currentTarget, !!f.hashing) },
      }, "Publish");
    const removeBtn = el("button", {
      type: "button", class: "btn btn-ghost btn-small",
      dataset: { action: "remove", focusKey: "remove:" + name },
      "aria-label": "Stop tracking " + name,
      on: { click: () => removeFile(name) },
    }, "Remove");
    return el("tr", { dataset: { name } },
      el("td", {},
        el("div", { class: "fname" }, name),
        f.path ? el("div", { class: "sub", title: f.path }, f.path) : null),
      el("td", { class: "num", "data-label": "Size" }, P.formatBytes(f.size)),
      el("td", { class: "nowrap", "data-label": "Modified" }, P.formatTime(f.modified)),
      el("td", { "data-label": "SHA-256" },
        f.sha256
          ? el("span", { class: "hash", title: f.sha256 }, P.shortHash(f.sha256))
          : el("span", { class: "muted" }, f.hashing ? "computing…" : "—")),
      el("td", { "data-label": "Sharing" }, sharingBadge(f),
        f.is_published && f.published_at
          ? el("div", { class: "sub nowrap" }, "since " + P.formatTime(f.published_at)) : null),
      el("td", { class: "actions" }, el("div", { class: "actions-inner" }, publishBtn, removeBtn)));
  }

  function wireFiles() {
    $("#add-browse").addEventListener("click", () => openPicker());
    $("#add-form").addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const input = $("#add-path");
      const path = input.value.trim();
      const msg = $("#add-msg");
      if (!path) {
        P.formMessage(msg, "Type the full path of a file, for example /home/me/report.pdf.");
        input.focus();
        return;
      }
      const btn = $("#add-submit");
      P.setBusy(btn, true, "Adding…");
      const res = await authed("POST", "/api/client/add-file", { path });
      P.setBusy(btn, false);
      if (!res.ok) {
        P.formMessage(msg, res.status === 409
          ? "A file with that name is already in your list: " + res.error
          : res.error);
        input.focus();
        return;
      }
      P.formMessage(msg, "");
      input.value = "";
      const added = res.data && res.data.file ? res.data.file.name : path;
      P.toast("Added “" + added + "”. Its SHA-256 is computed in the background.", "ok");
      input.focus();
      loadFiles();
    });
  }

  // ---- File picker: folders beneath the node's share roots -------------

  async function addPath(path) {
    const res = await authed("POST", "/api/client/add-file", { path });
    return res;
  }

  function pickerList(listing, go, pick) {
    const rows = [];
    if (listing.parent) {
      rows.push(el("li", {}, el("button", {
        type: "button", class: "picker-item picker-dir", dataset: { path: listing.parent },
        on: { click: () => go(listing.parent) },
      }, "↑ Up one folder")));
    } else if (listing.path) {
      rows.push(el("li", {}, el("button", {
        type: "button", class: "picker-item picker-dir",
        on: { click: () => go(null) },
      }, "↑ All shared folders")));
    }
    for (const e of listing.entries || []) {
      const isDir = e.kind === "dir";
      rows.push(el("li", {}, el("button", {
        type: "button",
        class: "picker-item " + (isDir ? "picker-dir" : "picker-file"),
        dataset: { path: e.path, kind: e.kind },
        on: { click: () => (isDir ? go(e.path) : pick(e.path)) },
      },
      el("span", { class: "picker-name" }, isDir ? e.name + "/" : e.name),
      el("span", { class: "picker-size muted" }, isDir ? "folder" : P.formatBytes(e.size)))));
    }
    return rows;
  }

  async function openPicker() {
    const list = el("ul", { class: "picker-list", id: "picker-list", "aria-live": "polite" });
    const where = el("p", { class: "picker-where mono", id: "picker-where" }, "");
    const note = el("p", { class: "form-msg", id: "picker-msg", role: "alert", hidden: true });
    let current = null;
    let files = [];
    async function go(path) {
      const qs = path ? "?path=" + encodeURIComponent(path) : "";
      const res = await authed("GET", "/api/client/browse" + qs);
      if (!res.ok || !res.data) {
        P.formMessage(note, res.error || "Cannot open that folder.");
        return;
      }
      P.formMessage(note, res.data.truncated ? "This folder holds more entries than can be shown." : "");
      current = res.data.path || null;
      files = (res.data.entries || []).filter((e) => e.kind === "file").map((e) => e.path);
      where.textContent = current ? current : "Folders you may share from";
      setChildren(list, pickerList(res.data, go, pickOne));
      const all = document.querySelector("#picker-add-all");
      if (all) {
        all.disabled = files.length === 0;
        all.textContent = files.length ? "Add all " + P.plural(files.length, "file", "files") + " here" : "No files here";
      }
    }
    let finish = null;
    async function pickOne(path) {
      $("#add-path").value = path;
      if (finish) finish();
      $("#add-form").requestSubmit();
    }
    const dialog = P.openDialog({
      title: "Choose a file to share",
      id: "picker-dialog",
      wide: true,
      body: [where, note, list],
      actions: [
        { label: "Add all files here", value: "all", kind: "primary", id: "picker-add-all" },
        { label: "Cancel", value: null, id: "picker-cancel" },
      ],
    });
    finish = () => {
      const close = document.querySelector("#picker-cancel");
      if (close) close.click();
    };
    await go(null);
    const choice = await dialog;
    if (choice !== "all" || files.length === 0) return;
    let added = 0;
    const failed = [];
    for (const path of files) {
      const res = await addPath(path);
      if (res.ok) added += 1;
      else if (res.status !== 409) failed.push(path.split("/").pop() + ": " + res.error);
    }
    if (added) P.toast("Added " + P.plural(added, "file", "files") + " from " + current + ".", "ok");
    if (failed.length) P.toast("Not added: " + failed.slice(0, 3).join("; ") + (failed.length > 3 ? "…" : ""), "error");
    loadFiles();
  }

  async function publishFile(fname, force, button, hashing) {
    if (button) P.setBusy(button, true, hashing ? "Hashing, then publishing…" : "Publishing…");
    const body = { fname };
    if (force) body.force = true;
    const res = await authed("POST", "/api/client/publish", body);
    if (button && button.isConnected) P.setBusy(button, false);
    if (res.ok) {
      // The node may accept a publish while the coordinator is away and say so.
      const note = res.data && typeof res.data.note === "string" ? res.data.note : "";
      if (note) P.toast("“" + fname + "” is published on this computer. " + note, "info");
      else P.toast("“" + fname + "” is now shared on the network.", "ok");
      loadFiles();
      return;
    }
    if (res.status === 409 && res.data && Array.isArray(res.data.duplicates)) {
      const choice = await duplicateDialog(fname, res.data.duplicates);
      if (choice === "anyway") await publishFile(fname, true, null);
      return;
    }
    if (res.status === 409 && res.data && res.data.hashing) {
      P.toast("“" + fname + "” is still being hashed. Publish it again in a moment.", "info");
      loadFiles();
      return;
    }
    P.toast("Could not publish “" + fname + "”: " + res.error, "error");
    loadFiles();
  }

  function duplicateDialog(fname, dups) {
    const items = dups.map((d) => {
      const who = d.display_name && d.display_name !== d.hostname
        ? d.display_name + " (" + d.hostname + ")"
        : String(d.hostname || "unknown host");
      const reason = d.reason === "same content"
        ? "Same content (identical SHA-256)"
        : d.reason === "same size and modified time"
          ? "Same size and modified time"
          : String(d.reason || "Looks the same");
      return el("li", { class: "dup-item" },
        el("span", { class: "fname" }, String(d.name)),
        el("span", { class: "sub" }, "Shared by " + who),
        el("span", { class: "sub" },
          [P.formatBytes(d.size), "modified " + P.formatTime(d.modified), reason].join(" · ")));
    });
    return P.openDialog({
      id: "duplicate-dialog",
      title: "This file is already on the network",
      body: [
        el("p", {}, "“", el("strong", {}, fname), "” looks the same as ",
          dups.length === 1 ? "a file" : dups.length + " files",
          " other people already share. Publishing it again adds another source for the same data."),
        el("ul", { class: "dup-list", "aria-label": "Files that look the same" }, items),
      ],
      actions: [
        { label: "Cancel", value: null, id: "dup-cancel" },
        { label: "Publish anyway", value: "anyway", kind: "primary", id: "dup-publish-anyway" },
      ],
    });
  }

  async function unpublishFile(fname, button) {
    P.setBusy(button, true, "Unpublishing…");
    const res = await authed("POST", "/api/client/unpublish", { fname });
    if (button.isConnected) P.setBusy(button, false);
    if (!res.ok) P.toast("Could not unpublish “" + fname + "”: " + res.error, "error");
    else P.toast("“" + fname + "” is no longer shared.", "ok");
    loadFiles();
  }

  async function removeFile(fname) {
    const ok = await P.openDialog({
      title: "Stop tracking this file?",
      body: el("p", {}, "“", el("strong", {}, fname),
        "” is removed from your list and no longer shared. The file on your disk is not touched."),
      actions: [
        { label: "Cancel", value: null },
        { label: "Stop tracking", value: "remove", kind: "danger", id: "remove-confirm" },
      ],
    });
    if (ok !== "remove") return;
    const res = await authed("POST", "/api/client/remove-file", { fname });
    if (!res.ok) P.toast("Could not remove “" + fname + "”: " + res.error, "error");
    else P.toast("Stopped tracking “" + fname + "”.", "ok");
    loadFiles();
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
        pollFetches();
        return "started";
      },
    });
  }

  // ---- Downloads ---------------------------------------------------------

  async function pollFetches() {
    clearTimeout(state.timers.fetches);
    const gen = state.generation;
    const res = await authed("GET", "/api/client/fetches");
    if (gen !== state.generation || !state.token) return;
    if (res.ok && res.data && Array.isArray(res.data.fetches)) {
      const firstLoad = !state.fetchesLoaded;
      state.fetchesLoaded = true;
      const next = new Map();
      for (const f of res.data.fetches) next.set(String(f.fetch_id), f);
      for (const [id, f] of next) {
        if (ACTIVE.has(f.status) || state.announced.has(id)) continue;
        state.announced.add(id);
        if (firstLoad) continue;
        if (f.status === "completed") P.toast("Downloaded “" + f.file_name + "”.", "ok");
        else if (f.status === "failed") P.toast("“" + f.file_name + "” failed: " + humanFetchError(f.error).text, "error");
      }
      state.fetches = next;
      renderFetches();
    }
    const anyActive = Array.from(state.fetches.values()).some((f) => ACTIVE.has(f.status));
    state.timers.fetches = setTimeout(pollFetches, anyActive ? FETCH_ACTIVE_MS : FETCH_IDLE_MS);
  }

  const STATUS_LABEL = {
    pending: ["Waiting", "badge-info"],
    downloading: ["Downloading", "badge-info"],
    verifying: ["Verifying", "badge-warn"],
    paused: ["Paused", "badge-warn"],
    completed: ["Completed", "badge-ok"],
    failed: ["Failed", "badge-danger"],
    cancelled: ["Cancelled", ""],
  };

  /** Peer and node error codes → a sentence a person understands. */
  function humanFetchError(raw) {
    const text = String(raw || "").trim();
    const low = text.toLowerCase();
    const rules = [
      [/^(error )?notfound$|not published|no longer/, "The other computer no longer shares this file."],
      [/filenotfound|gone from disk|changed since/, "The file was moved, deleted or changed on the other computer since it was published."],
      [/readerror|read error/, "The other computer could not read the file from its disk."],
      [/refused/, "Could not connect to the other computer: it may be offline or behind a firewall."],
      [/timed? ?out|timeout/, "The other computer stopped answering."],
      [/reset|broken pipe|closed|eof|unexpected end/, "The connection to the other computer was lost before the download finished."],
      [/sha|checksum|hash|mismatch|verify/, "The downloaded data did not match the published fingerprint (SHA-256), so it was discarded."],
      [/exists/, "A file already exists at the save location. Choose another path, or allow replacing it."],
      [/permission|denied|read-only/, "p2pshare may not write to the save location. Choose another folder."],
      [/no space|disk full/, "There is not enough free disk space for this file."],
      [/no (online )?hosts?|no peers?|nobody|not found on the network|notfound/, "No computer that has this file is online right now."],
      [/cancel/, "The download was cancelled."],
    ];
    for (const [re, sentence] of rules) {
      if (re.test(low)) return { text: sentence, detail: text };
    }
    if (!text) return { text: "The download failed for an unknown reason.", detail: "" };
    const sentence = text.charAt(0).toUpperCase() + text.slice(1);
    return { text: /[.!?]$/.test(sentence) ? sentence : sentence + ".", detail: "" };
  }

  function renderFetches() {
    const list = $("#downloads-list");
    const fetches = Array.from(state.fetches.values());
    $("#downloads-empty").hidden = fetches.length > 0;
    const active = fetches.filter((f) => ACTIVE.has(f.status)).length;
    const badge = $("#downloads-badge");
    badge.hidden = active === 0;
    badge.textContent = String(active);
    badge.setAttribute("aria-label", P.plural(active, "active download", "active downloads"));

    // Update cards in place, so bars animate smoothly and focus stays put.
    const existing = new Map($$(".transfer", list).map((n) => [n.dataset.fetchId, n]));
    const order = [];
    for (const f of fetches) {
      const id = String(f.fetch_id);
      let card = existing.get(id);
      if (!card) card = buildTransfer(id);
      updateTransfer(card, f);
      existing.delete(id);
      order.push(card);
    }
    for (const stale of existing.values()) stale.remove();
    order.forEach((card, i) => {
      if (list.children[i] !== card) list.insertBefore(card, list.children[i] || null);
    });
  }

  function buildTransfer(id) {
    const card = el("li", { class: "card transfer", dataset: { fetchId: id } },
      el("div", { class: "transfer-head" },
        el("div", { class: "transfer-title" },
          el("span", { class: "fname", dataset: { part: "name" } }),
          el("span", { class: "transfer-path", dataset: { part: "path" } })),
        el("div", { class: "actions" },
          el("span", { class: "badge", dataset: { part: "badge" } }),
          el("button", {
            type: "button", class: "btn btn-ghost btn-small", dataset: { part: "pause", focusKey: "pause:" + id },
            on: { click: () => pauseFetch(id, card) },
          }, "Pause"),
          el("button", {
            type: "button", class: "btn btn-ghost btn-small", dataset: { part: "cancel", focusKey: "cancel:" + id },
            on: { click: () => cancelFetch(id, card) },
          }, "Cancel"))),
      el("div", { class: "progress-row" },
        el("div", {
          class: "progress", role: "progressbar", "aria-valuemin": "0", "aria-valuemax": "100",
          dataset: { part: "bar" },
        }, el("div", { class: "progress-fill", dataset: { part: "fill" } })),
        el("span", { class: "progress-pct", dataset: { part: "pct" } })),
      el("dl", { class: "transfer-stats" },
        stat("Downloaded", "bytes"), stat("Speed", "speed"), stat("Time left", "eta"), stat("From", "peer")),
      el("ul", { class: "transfer-peers", dataset: { part: "peers" }, "aria-label": "Computers sending this file" }),
      el("p", { class: "transfer-note", dataset: { part: "shared" }, hidden: true }),
      el("p", { class: "transfer-error", dataset: { part: "error" }, hidden: true }));
    return card;
  }

  function stat(label, part) {
    return el("div", {}, el("dt", {}, label), el("dd", { dataset: { part } }));
  }

  function part(card, name) {
    return card.querySelector('[data-part="' + name + '"]');
  }

  function updateTransfer(card, f) {
    const active = ACTIVE.has(f.status);
    const total = typeof f.total_size === "number" ? f.total_size : 0;
    const done = typeof f.downloaded_size === "number" ? f.downloaded_size : 0;
    let pct = typeof f.progress_percent === "number" ? f.progress_percent
      : total > 0 ? (done / total) * 100 : 0;
    if (f.status === "completed") pct = 100;
    pct = Math.max(0, Math.min(100, pct));
    const name = String(f.file_name || "");
    card.dataset.status = String(f.status);
    part(card, "name").textContent = name;
    part(card, "path").textContent = f.save_path ? "→ " + f.save_path : "";
    const [label, cls] = STATUS_LABEL[f.status] || [String(f.status), ""];
    const badge = part(card, "badge");
    badge.className = "badge " + cls;
    badge.textContent = label;
    const cancel = part(card, "cancel");
    cancel.hidden = !CANCELLABLE.has(f.status);
    cancel.setAttribute("aria-label", "Cancel download of " + name);
    const pause = part(card, "pause");
    const paused = f.status === "paused";
    pause.hidden = !paused && !(f.status === "pending" || f.status === "downloading");
    pause.textContent = paused ? "Resume" : "Pause";
    pause.dataset.action = paused ? "resume" : "pause";
    pause.setAttribute("aria-label", (paused ? "Resume" : "Pause") + " download of " + name);

    const bar = part(card, "bar");
    const shown = pct >= 99.95 && f.status !== "completed" ? 99.9 : pct;
    bar.setAttribute("aria-valuenow", String(Math.floor(shown)));
    bar.setAttribute("aria-label", "Download progress for " + name);
    bar.className = "progress" + ({
      completed: " progress-done", failed: " progress-failed",
      cancelled: " progress-cancelled", verifying: " progress-verifying",
    }[f.status] || "");
    part(card, "fill").style.width = shown.toFixed(1) + "%";
    part(card, "pct").textContent = (shown === 100 ? "100" : shown.toFixed(1)) + "%";

    part(card, "bytes").textContent = P.formatBytes(done) + " of " + P.formatBytes(total);
    const took = f.finished_at && f.started_at ? f.finished_at - f.started_at : 0;
    part(card, "speed").textContent = f.status === "downloading"
      ? P.formatSpeed(f.speed_bps)
      : f.status === "completed" && took > 0 ? P.formatSpeed(total / took) + " average" : "—";
    part(card, "eta").textContent = f.status === "downloading"
      ? P.formatDuration(f.eta_seconds)
      : f.status === "completed" && took >= 0 && f.finished_at
        ? "done in " + (took < 1 ? "under 1 s" : P.formatDuration(took))
        : "—";
    const peers = Array.isArray(f.peers) ? f.peers : [];
    const using = peers.filter((p) => p.state === "active").length;
    part(card, "peer").textContent = using > 1 ? using + " computers" : f.peer ? String(f.peer) : "—";
    renderPeers(part(card, "peers"), peers);
    const shared = part(card, "shared");
    shared.hidden = !(f.status === "completed" && f.shared);
    shared.textContent = f.shared ? "Your files: " + String(f.shared) : "";

    const err = part(card, "error");
    if (f.status === "failed" || (f.error && f.status !== "completed" && f.status !== "cancelled")) {
      const human = humanFetchError(f.error);
      err.hidden = false;
      setChildren(err, human.text,
        human.detail ? el("span", { class: "sub" }, " (" + human.detail + ")") : null);
    } else {
      err.hidden = true;
      setChildren(err);
    }
  }

  /** One line per computer: its share of the bytes, speed and state. */
  function renderPeers(list, peers) {
    list.hidden = peers.length === 0;
    setChildren(list, peers.map((p) => {
      const state = p.state === "dropped" ? "dropped" : p.state === "active" ? "sending" : "done";
      return el("li", { class: "peer peer-" + state, dataset: { host: String(p.hostname) } },
        el("span", { class: "peer-name" }, String(p.hostname)),
        el("span", { class: "peer-share" },
          (typeof p.share_percent === "number" ? p.share_percent.toFixed(0) : "0") + "% · " + P.formatBytes(p.bytes || 0)),
        el("span", { class: "peer-speed" }, p.state === "active" ? P.formatSpeed(p.speed_bps || 0) : ""),
        el("span", { class: "peer-state" }, state + (p.reason ? ": " + String(p.reason) : "")));
    }));
  }

  async function pauseFetch(id, card) {
    const btn = part(card, "pause");
    const what = btn.dataset.action === "resume" ? "resume" : "pause";
    P.setBusy(btn, true, what === "resume" ? "Resuming…" : "Pausing…");
    const res = await authed("POST", "/api/client/fetch/" + encodeURIComponent(id) + "/" + what, {});
    if (btn.isConnected) P.setBusy(btn, false);
    if (!res.ok) P.toast("Could not " + what + ": " + res.error, "error");
    pollFetches();
  }

  async function cancelFetch(id, card) {
    const btn = part(card, "cancel");
    P.setBusy(btn, true, "Cancelling…");
    const res = await authed("DELETE", "/api/client/fetch/" + encodeURIComponent(id));
    if (btn.isConnected) P.setBusy(btn, false);
    if (!res.ok) {
      P.toast(res.status === 409 ? "That download has already finished." : "Could not cancel: " + res.error,
        res.status === 409 ? "info" : "error");
    }
    pollFetches();
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
    wireFiles();
    wireNetwork();
    resume();
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
