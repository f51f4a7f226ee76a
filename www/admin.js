// p2pshare admin UI: admin login, the live dashboard (/api/stats, polled every
// second, charted by hand in SVG) and the clients table (server-side search
// and paging, ping, discover). Host and file names are peer-supplied: they
// only ever become text nodes, never markup.
"use strict";

(function () {
  const P = window.P2P;
  const { el, svg, $, $$, api, setChildren } = P;

  const TOKEN_KEY = "p2pshare.admin.token";
  const PAGE_SIZE = 50;
  const STATS_EVERY_MS = 1000;
  const CLIENTS_EVERY_MS = 5000;
  const HISTORY = 120; // chart points: two minutes at one sample a second
  const ACTIONS = ["REGISTER", "PUBLISH", "UNPUBLISH", "REQUEST", "DISCOVER", "PING", "LIST", "UNREGISTER"];
  const VIEWS = ["dashboard", "clients", "credentials"];
  const TITLES = { dashboard: "Dashboard", clients: "Clients", credentials: "Node credentials" };

  const state = {
    token: null,
    view: "dashboard",
    history: [],
    lastStats: null,
    clients: { q: "", offset: 0, total: 0, nextOffset: null, rows: [] },
    pings: new Map(), // hostname → {status, rtt_ms, error, at}
    timers: { stats: null, clients: null },
    generation: 0,
  };

  function authed(method, path, body) {
    return api(method, path, body, state.token).then((res) => {
      if (res.status === 401 && state.token) endSession("Your admin session has ended. Please log in again.");
      return res;
    });
  }

  // ---- Session -----------------------------------------------------------

  function stopTimers() {
    for (const k of Object.keys(state.timers)) {
      clearTimeout(state.timers[k]);
      state.timers[k] = null;
    }
  }

  function endSession(message) {
    state.generation += 1;
    stopTimers();
    state.token = null;
    P.store.remove(TOKEN_KEY);
    state.history = [];
    state.pings.clear();
    state.clients = { q: "", offset: 0, total: 0, nextOffset: null, rows: [] };
    setChildren($("#clients-body"));
    $("#clients-q").value = "";
    showAuth(message, "info");
  }

  function showAuth(message, kind) {
    $("#app-view").hidden = true;
    $("#auth-view").hidden = false;
    document.title = "p2pshare admin — Log in";
    P.formMessage($("#login-msg"), message || "", kind || "error");
    $("#login-password").focus();
  }

  function showApp() {
    $("#auth-view").hidden = true;
    $("#app-view").hidden = false;
    const fromHash = location.hash.replace("#", "");
    setView(VIEWS.includes(fromHash) ? fromHash : "dashboard", false);
    pollStats();
  }

  async function resume() {
    state.token = P.store.get(TOKEN_KEY);
    if (!state.token) {
      showAuth();
      return;
    }
    const res = await api("GET", "/api/admin/registry?offset=0&limit=1", undefined, state.token);
    if (res.ok) showApp();
    else {
      state.token = null;
      P.store.remove(TOKEN_KEY);
      showAuth(res.status === 401 ? "Your admin session has ended. Please log in again." : res.error,
        res.status === 401 ? "info" : "error");
    }
  }

  function wireAuth() {
    $("#login-form").addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const msg = $("#login-msg");
      const username = $("#login-username").value.trim();
      const password = $("#login-password").value;
      if (!username || !password) {
        P.formMessage(msg, "Enter the admin username and password.");
        return;
      }
      const btn = $("#login-submit");
      P.setBusy(btn, true, "Logging in…");
      const res = await api("POST", "/api/admin/login", { username, password });
      P.setBusy(btn, false);
      if (!res.ok || !res.data || !res.data.token) {
        P.formMessage(msg, res.status === 401 ? "Wrong admin username or password." : res.error);
        $("#login-password").select();
        return;
      }
      P.formMessage(msg, "");
      $("#login-password").value = "";
      state.token = res.data.token;
      P.store.set(TOKEN_KEY, state.token);
      $("#admin-name").textContent = username;
      showApp();
    });
    $("#logout-btn").addEventListener("click", () => endSession("You have logged out."));
  }

  // ---- Navigation --------------------------------------------------------

  function setView(name, focus) {
    state.view = name;
    for (const v of VIEWS) {
      $("#view-" + v).hidden = v !== name;
      const link = $("#nav-" + v);
      if (v === name) link.setAttribute("aria-current", "page");
      else link.removeAttribute("aria-current");
    }
    document.title = "p2pshare admin — " + TITLES[name];
    if (location.hash !== "#" + name) history.replaceState(null, "", "#" + name);
    clearTimeout(state.timers.clients);
    if (name === "clients") loadClients();
    if (name === "credentials") loadCredentials();
    if (name === "dashboard") drawChart();
    if (focus) $("#main").focus();
  }

  function wireNav() {
    for (const link of $$(".navlink")) link.addEventListener("click", () => setView(link.dataset.view, true));
    window.addEventListener("hashchange", () => {
      const name = location.hash.replace("#", "");
      if (state.token && VIEWS.includes(name) && name !== state.view) setView(name, false);
    });
    window.addEventListener("resize", P.debounce(drawChart, 100));
  }

  // ---- Dashboard ---------------------------------------------------------

  async function pollStats() {
    clearTimeout(state.timers.stats);
    const gen = state.generation;
    const res = await authed("GET", "/api/stats");
    if (gen !== state.generation || !state.token) return;
    if (res.ok && res.data) {
      state.lastStats = res.data;
      state.history.push({
        t: Date.now(),
        ops: num(res.data.ops_per_s),
        online: num(res.data.clients_online),
      });
      if (state.history.length > HISTORY) state.history.shift();
      renderStats(res.data);
      setLive(true);
    } else {
      setLive(false, res.error);
    }
    state.timers.stats = setTimeout(pollStats, STATS_EVERY_MS);
  }

  function num(v) {
    return typeof v === "number" && isFinite(v) ? v : 0;
  }

  function setLive(ok, error) {
    const now = new Date();
    const time = now.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" });
    setChildren($("#live-indicator"),
      el("span", { class: "dot " + (ok ? "dot-ok" : "dot-danger"), "aria-hidden": "true" }),
      el("span", { id: "live-text" }, ok ? "Live" : "Not updating"));
    setChildren($("#sb-conn"),
      el("span", { class: "dot " + (ok ? "dot-ok" : "dot-danger"), "aria-hidden": "true" }),
      el("span", {}, ok ? "Connected to the coordinator" : "Cannot load statistics: " + (error || "unknown error")));
    if (ok) setChildren($("#sb-updated"), "Updated " + time);
  }

  function fmtCount(n) {
    return typeof n === "number" && isFinite(n) ? n.toLocaleString() : "—";
  }

  function fmtRate(n) {
    if (typeof n !== "number" || !isFinite(n)) return "—";
    if (n === 0) return "0";
    return n < 10 ? n.toFixed(2) : n < 100 ? n.toFixed(1) : Math.round(n).toLocaleString();
  }

  function renderStats(s) {
    $("#stat-online").textContent = fmtCount(s.clients_online);
    $("#stat-offline").textContent = fmtCount(s.clients_offline);
    $("#stat-files").textContent = fmtCount(s.files_total);
    $("#stat-conns").textContent = fmtCount(s.connections_open);
    $("#stat-ops").textContent = fmtRate(s.ops_per_s);
    $("#stat-uptime").textContent = P.formatDuration(s.uptime_s);
    $("#stat-online-note").textContent =
      typeof s.clients_total === "number" ? "of " + fmtCount(s.clients_total) + " registered" : "";
    $("#stat-total-note").textContent = "kept, listed last";
    $("#stat-users-note").textContent =
      typeof s.users === "number" ? P.plural(s.users, "user account", "user accounts") : "";
    $("#stat-uptime-note").textContent =
      typeof s.uptime_s === "number" ? "since " + P.formatTime(Date.now() / 1000 - s.uptime_s) : "";
    setChildren($("#sb-summary"),
      fmtCount(s.clients_online) + " online · " + fmtCount(s.files_total) + " files · " +
      fmtRate(s.ops_per_s) + " ops/s");

    const ops = s.ops && typeof s.ops === "object" ? s.ops : {};
    const names = ACTIONS.concat(Object.keys(ops).filter((k) => !ACTIONS.includes(k)).sort());
    setChildren($("#latency-body"), names.map((name) => {
      const o = ops[name] || {};
      return el("tr", {},
        el("th", { scope: "row", "data-label": "Action" }, el("span", { class: "mono" }, name)),
        el("td", { class: "num", "data-label": "Last 60 s" }, fmtCount(num(o.count_60s))),
        el("td", { class: "num", "data-label": "Per second" }, fmtRate(num(o.ops_per_s))),
        el("td", { class: "num", "data-label": "p50" }, o.count_60s ? P.formatMs(o.p50_ms) : "—"),
        el("td", { class: "num", "data-label": "p99" }, o.count_60s ? P.formatMs(o.p99_ms) : "—"));
    }));
    if (state.view === "dashboard") drawChart();
  }

  /** A "nice" axis maximum (1, 2, 5 × 10^n) at or above `v`. */
  function niceMax(v) {
    if (v <= 0) return 1;
    const p = Math.pow(10, Math.floor(Math.log10(v)));
    for (const m of [1, 2, 5, 10]) if (m * p >= v) return m * p;
    return 10 * p;
  }

  function drawChart() {
    const chart = $("#ops-chart");
    if (!chart || $("#view-dashboard").hidden) return;
    const width = Math.max(280, Math.round(chart.getBoundingClientRect().width) || 600);
    const height = 200;
    const pad = { l: 44, r: 36, t: 10, b: 24 };
    const w = width - pad.l - pad.r;
    const h = height - pad.t - pad.b;
    chart.setAttribute("viewBox", "0 0 " + width + " " + height);
    const hist = state.history;
    const opsMax = niceMax(Math.max(0, ...hist.map((p) => p.ops)));
    const onMax = niceMax(Math.max(0, ...hist.map((p) => p.online)));
    const x = (i) => pad.l + (w * (HISTORY - hist.length + i)) / (HISTORY - 1);
    const yOps = (v) => pad.t + h - (h * v) / opsMax;
    const yOn = (v) => pad.t + h - (h * v) / onMax;

    const parts = [];
    for (let g = 0; g <= 4; g += 1) {
      const y = pad.t + (h * g) / 4;
      parts.push(svg("line", { class: "grid-line", x1: pad.l, x2: pad.l + w, y1: y, y2: y }));
      parts.push(svg("text", { class: "axis-label", x: pad.l - 6, y: y + 4, "text-anchor": "end" },
        fmtRate((opsMax * (4 - g)) / 4)));
      parts.push(svg("text", { class: "axis-label", x: pad.l + w + 6, y: y + 4, "text-anchor": "start" },
        fmtAxisCount((onMax * (4 - g)) / 4)));
    }
    const labels = [["−2 min", 0], ["−1 min", (HISTORY - 1) / 2], ["now", HISTORY - 1]];
    for (const [text, i] of labels) {
      parts.push(svg("text", {
        class: "axis-label",
        x: pad.l + (w * i) / (HISTORY - 1),
        y: height - 6,
        "text-anchor": i === 0 ? "start" : i === HISTORY - 1 ? "end" : "middle",
      }, text));
    }
    if (hist.length > 0) {
      const opsPts = hist.map((p, i) => x(i).toFixed(1) + "," + yOps(p.ops).toFixed(1));
      const onPts = hist.map((p, i) => x(i).toFixed(1) + "," + yOn(p.online).toFixed(1));
      if (hist.length === 1) {
        // One sample: draw it as a short flat segment so it is visible.
        opsPts.unshift((x(0) - 4).toFixed(1) + "," + yOps(hist[0].ops).toFixed(1));
        onPts.unshift((x(0) - 4).toFixed(1) + "," + yOn(hist[0].online).toFixed(1));
      }
      const base = (pad.t + h).toFixed(1);
      const first = opsPts[0].split(",")[0];
      const last = opsPts[opsPts.length - 1].split(",")[0];
      parts.push(svg("polygon", {
        class: "area-ops",
        points: first + "," + base + " " + opsPts.join(" ") + " " + last + "," + base,
      }));
      parts.push(svg("polyline", { class: "line-online", points: onPts.join(" ") }));
      parts.push(svg("polyline", { class: "line-ops", points: opsPts.join(" ") }));
    }
    const lastPoint = hist[hist.length - 1];
    const desc = lastPoint
      ? "Now " + fmtRate(lastPoint.ops) + " operations per second and " +
        P.plural(lastPoint.online, "client", "clients") + " online."
      : "No data yet.";
    setChildren(chart, svg("desc", { id: "chart-desc" }, desc), parts);
  }

  function fmtAxisCount(v) {
    return Number.isInteger(v) ? String(v) : v.toFixed(1);
  }

  // ---- Clients -----------------------------------------------------------

  async function loadClients() {
    clearTimeout(state.timers.clients);
    const gen = state.generation;
    const c = state.clients;
    const qs = new URLSearchParams({ q: c.q, offset: String(c.offset), limit: String(PAGE_SIZE) });
    const res = await authed("GET", "/api/admin/registry?" + qs.toString());
    if (gen !== state.generation || !state.token) return;
    const msg = $("#clients-msg");
    if (!res.ok || !res.data) {
      P.formMessage(msg, "Could not load clients: " + res.error);
    } else {
      P.formMessage(msg, "");
      const rows = Array.isArray(res.data.clients) ? res.data.clients : [];
      c.rows = rows;
      c.total = typeof res.data.total === "number" ? res.data.total : rows.length;
      c.nextOffset = typeof res.data.next_offset === "number" ? res.data.next_offset : null;
      renderClients();
    }
    if (state.view === "clients") state.timers.clients = setTimeout(loadClients, CLIENTS_EVERY_MS);
  }

  function keepFocus(render) {
    const active = document.activeElement;
    const key = active && active.dataset ? active.dataset.focusKey : null;
    render();
    if (key) {
      const again = $$("[data-focus-key]").find((n) => n.dataset.focusKey === key);
      if (again && !again.disabled) again.focus();
    }
  }

  function renderClients() {
    const c = state.clients;
    const empty = c.rows.length === 0;
    $("#clients-table").hidden = empty;
    $("#clients-empty").hidden = !empty;
    if (empty) {
      $("#clients-empty-title").textContent = c.q ? "No match" : "No clients";
      $("#clients-empty-text").textContent = c.q
        ? "No host or display name contains “" + c.q + "”."
        : "No computer has registered yet.";
    }
    keepFocus(() => setChildren($("#clients-body"), c.rows.map(clientRow)));
    $("#clients-pager").hidden = empty;
    $("#clients-range").textContent = empty ? "" :
      (c.offset + 1) + "–" + (c.offset + c.rows.length) + " of " + P.plural(c.total, "client", "clients");
    $("#clients-prev").disabled = c.offset === 0;
    $("#clients-next").disabled = c.nextOffset === null;
  }

  function pingCell(hostname) {
    const p = state.pings.get(hostname);
    if (!p) return el("span", { class: "muted" }, "—");
    if (p.pending) return el("span", { class: "ping-result muted" }, "pinging…");
    if (p.status === "online" && typeof p.rtt_ms === "number") {
      return el("span", { class: "ping-result", title: "Measured " + P.formatAgo(p.at) },
        el("span", { class: "badge badge-ok" }, P.formatMs(p.rtt_ms)));
    }
    return el("span", { class: "ping-result", title: p.error || null },
      el("span", { class: "badge badge-danger" }, "no answer"));
  }

  function clientRow(h) {
    const hostname = String(h.hostname);
    const online = h.status === "online";
    const fileCount = typeof h.file_count === "number" ? h.file_count
      : h.files && typeof h.files === "object" ? Object.keys(h.files).length : 0;
    return el("tr", { dataset: { hostname } },
      el("td", {},
        el("div", { class: "fname" }, hostname),
        h.display_name && h.display_name !== hostname ? el("div", { class: "sub" }, String(h.display_name)) : null),
      el("td", { class: "mono nowrap", "data-label": "Address" },
        h.ip ? String(h.ip) + (h.port ? ":" + h.port : "") : "—"),
      el("td", { class: "num", "data-label": "Files" }, fmtCount(fileCount)),
      el("td", { "data-label": "Status" },
        el("span", { class: "badge " + (online ? "badge-ok" : "") },
          el("span", { class: "dot " + (online ? "dot-ok" : "dot-off"), "aria-hidden": "true" }),
          online ? "Online" : "Offline")),
      el("td", { class: "nowrap", "data-label": "Last seen" }, P.formatAgo(h.last_seen)),
      el("td", { class: "ping-cell", "data-label": "Round trip" }, pingCell(hostname)),
      el("td", { class: "actions" }, el("div", { class: "actions-inner" },
        el("button", {
          type: "button", class: "btn btn-ghost btn-small",
          dataset: { action: "ping", focusKey: "ping:" + hostname },
          "aria-label": "Ping " + hostname,
          on: { click: () => pingHost(hostname) },
        }, "Ping"),
        el("button", {
          type: "button", class: "btn btn-ghost btn-small",
          dataset: { action: "discover", focusKey: "discover:" + hostname },
          "aria-label": "Show files of " + hostname,
          on: { click: () => discoverHost(hostname) },
        }, "Files"))));
  }

  async function pingHost(hostname) {
    state.pings.set(hostname, { pending: true });
    renderClients();
    const res = await authed("GET", "/api/admin/ping/" + encodeURIComponent(hostname));
    const d = res.data || {};
    state.pings.set(hostname, {
      status: res.ok ? d.status : "offline",
      rtt_ms: typeof d.rtt_ms === "number" ? d.rtt_ms : null,
      error: res.ok ? d.error || null : res.error,
      at: Date.now() / 1000,
    });
    renderClients();
    if (res.ok && d.status === "online" && typeof d.rtt_ms === "number") {
      P.toast(hostname + " answered in " + P.formatMs(d.rtt_ms) + ".", "ok");
    } else {
      P.toast(hostname + " did not answer" + (d.error || res.error ? ": " + (d.error || res.error) : "."), "error");
    }
  }

  async function discoverHost(hostname) {
    const res = await authed("GET", "/api/admin/discover/" + encodeURIComponent(hostname));
    if (!res.ok || !res.data) {
      P.toast("Could not list the files of " + hostname + ": " + res.error, "error");
      return;
    }
    const files = res.data.files && typeof res.data.files === "object" ? res.data.files : {};
    const names = Object.keys(files).sort((a, b) => a.localeCompare(b));
    const addr = Array.isArray(res.data.addr) ? res.data.addr.join(":") : "";
    const body = names.length === 0
      ? el("p", { class: "muted" }, "This host publishes no files.")
      : el("div", { class: "card table-card" },
        el("table", { class: "table", id: "discover-table" },
          el("caption", { class: "sr-only" }, "Files published by " + hostname),
          el("thead", {}, el("tr", {},
            el("th", { scope: "col" }, "Name"),
            el("th", { scope: "col", class: "num" }, "Size"),
            el("th", { scope: "col" }, "Modified"),
            el("th", { scope: "col" }, "Published"),
            el("th", { scope: "col" }, "SHA-256"))),
          el("tbody", {}, names.map((name) => {
            const f = files[name] || {};
            return el("tr", { dataset: { name } },
              el("td", {}, el("span", { class: "fname" }, name)),
              el("td", { class: "num", "data-label": "Size" }, P.formatBytes(f.size)),
              el("td", { class: "nowrap", "data-label": "Modified" }, P.formatTime(f.modified)),
              el("td", { class: "nowrap", "data-label": "Published" }, P.formatTime(f.published_at)),
              el("td", { "data-label": "SHA-256" },
                el("span", { class: "hash", title: f.sha256 || null }, P.shortHash(f.sha256))));
          }))));
    await P.openDialog({
      id: "discover-dialog",
      wide: true,
      title: "Files shared by " + hostname,
      body: [
        el("p", { class: "muted" }, P.plural(names.length, "published file", "published files") +
          (addr ? " · peer address " + addr : "")),
        body,
      ],
      actions: [{ label: "Close", value: null, kind: "primary", id: "discover-close" }],
    });
  }

  function wireClients() {
    const search = () => {
      state.clients.q = $("#clients-q").value.trim();
      state.clients.offset = 0;
      loadClients();
    };
    $("#clients-search").addEventListener("submit", (ev) => {
      ev.preventDefault();
      search();
    });
    // Paging is server-side, so searching as you type stays cheap at any size.
    $("#clients-q").addEventListener("input", P.debounce(search, 250));
    $("#clients-prev").addEventListener("click", () => {
      state.clients.offset = Math.max(0, state.clients.offset - PAGE_SIZE);
      loadClients();
    });
    $("#clients-next").addEventListener("click", () => {
      if (state.clients.nextOffset !== null) {
        state.clients.offset = state.clients.nextOffset;
        loadClients();
      }
    });
  }

  // ---- Node credentials --------------------------------------------------

  async function loadCredentials() {
    const gen = state.generation;
    const res = await authed("GET", "/api/admin/credentials");
    if (gen !== state.generation || !state.token) return;
    const msg = $("#cred-msg");
    if (!res.ok || !res.data) {
      P.formMessage(msg, "Could not load the node credentials: " + res.error);
      return;
    }
    P.formMessage(msg, "");
    const rows = Array.isArray(res.data.credentials) ? res.data.credentials : [];
    $("#cred-table").hidden = rows.length === 0;
    $("#cred-empty").hidden = rows.length !== 0;
    keepFocus(() => setChildren($("#cred-body"), rows.map(credentialRow)));
  }

  function credentialRow(c) {
    const id = String(c.id);
    const revoked = c.revoked === true;
    return el("tr", { dataset: { credential: id } },
      el("td", {}, el("div", { class: "fname" }, String(c.username))),
      el("td", { class: "mono", "data-label": "Node" }, c.label ? String(c.label) : "—"),
      el("td", { class: "nowrap", "data-label": "Issued" }, P.formatAgo(c.created_at)),
      el("td", { class: "nowrap", "data-label": "Expires" }, new Date(c.expires_at * 1000).toLocaleDateString()),
      el("td", { "data-label": "Status" },
        el("span", { class: "badge " + (revoked ? "badge-danger" : "badge-ok") }, revoked ? "Revoked" : "Active")),
      el("td", { class: "actions" }, el("div", { class: "actions-inner" },
        revoked ? null : el("button", {
          type: "button", class: "btn btn-ghost btn-small",
          dataset: { action: "revoke", focusKey: "revoke:" + id },
          "aria-label": "Revoke the node credential of " + c.username,
          on: { click: () => revokeCredential(c) },
        }, "Revoke"))));
  }

  async function revokeCredential(c) {
    const res = await authed("DELETE", "/api/admin/credentials/" + encodeURIComponent(String(c.id)));
    if (res.ok) {
      P.toast("Revoked: " + c.username + " is off that node until they log in again.", "ok");
    } else {
      P.toast("Could not revoke the credential: " + res.error, "error");
    }
    loadCredentials();
  }

  function start() {
    wireAuth();
    wireNav();
    wireClients();
    resume();
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
