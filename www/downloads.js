// p2pshare client UI, Downloads: each fetch with its progress, speed, ETA,
// the computers it comes from, pause/resume/cancel, where it is saved (with
// a copy button), and "Clear finished" (POST /fetches/clear, docs/client-api.md). Shares app.js's state
// through window.P2PClient (see app.js).
"use strict";

(function () {
  const P = window.P2P;
  const { el, $, $$, api, setChildren } = P;
  const C = window.P2PClient;
  const { state, authed, FETCH_ACTIVE_MS, FETCH_IDLE_MS, ACTIVE, CANCELLABLE } = C;

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
    $("#downloads-clear").hidden = !fetches.some((f) => FINISHED.has(f.status));
    order.forEach((card, i) => {
      if (list.children[i] !== card) list.insertBefore(card, list.children[i] || null);
    });
  }

  function buildTransfer(id) {
    const card = el("li", { class: "card transfer", dataset: { fetchId: id } },
      el("div", { class: "transfer-head" },
        el("div", { class: "transfer-title" },
          el("span", { class: "fname", dataset: { part: "name" } }),
          el("div", { class: "transfer-where" },
            el("span", { class: "transfer-path", dataset: { part: "path" } }),
            el("button", {
              type: "button", class: "btn btn-ghost btn-small", dataset: { part: "copy", focusKey: "copy:" + id },
              on: { click: () => copyPath(card) },
            }, "Copy path"))),
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
    card.dataset.path = f.save_path ? String(f.save_path) : "";
    const copy = part(card, "copy");
    copy.hidden = !f.save_path;
    copy.setAttribute("aria-label", "Copy where " + name + " is saved");
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

  const FINISHED = new Set(["completed", "failed", "cancelled"]);

  /** The absolute path of the download, to paste into a file manager or a terminal. */
  async function copyPath(card) {
    const text = card.dataset.path || "";
    try {
      await navigator.clipboard.writeText(text);
      P.toast("Copied: " + text, "ok");
    } catch (_) {
      P.toast("Your browser did not allow copying. Select the path and copy it by hand.", "error");
    }
  }

  /** Forgets completed, failed and cancelled downloads; the files stay where they are. */
  async function clearFinished() {
    const btn = $("#downloads-clear");
    P.setBusy(btn, true, "Clearing…");
    const res = await authed("POST", "/api/client/fetches/clear", {});
    P.setBusy(btn, false);
    if (res.ok) {
      const n = Number(res.data && res.data.cleared) || 0;
      P.toast(n === 0 ? "Nothing to clear." : "Cleared " + P.plural(n, "finished download", "finished downloads")
        + " from this list; the files stay where they were saved.", "ok");
    } else {
      P.toast("Could not clear the list: " + res.error, "error");
    }
    pollFetches();
  }

  function wireDownloads() {
    $("#downloads-clear").addEventListener("click", clearFinished);
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

  Object.assign(C, { pollFetches, renderFetches, wireDownloads });
})();
