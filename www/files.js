// p2pshare client UI, My files: the user's tracked files (add by path or
// with the picker, publish, unpublish, remove), the shared folders the node
// follows (new files in them are shared by themselves; stop following,
// rescan now), the file picker over the node's share roots (one file, all
// files here, or share this folder), and the duplicate dialog. Shares app.js's state
// through window.P2PClient (see app.js).
"use strict";

(function () {
  const P = window.P2P;
  const { el, $, $$, api, setChildren } = P;
  const C = window.P2PClient;
  const { state, authed, keepFocus, HASHING_RECHECK_MS } = C;
  const FOLDER_RECHECK_MS = 10_000;

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
    loadFolders();
    // Hashing runs on the node in the background; look again until it is
    // done. Shared folders gain files by themselves (the node looks every
    // 10 s): look again at that pace while any is followed.
    const again = files.some((f) => f.hashing) ? HASHING_RECHECK_MS : state.following ? FOLDER_RECHECK_MS : 0;
    if (again && state.view === "files") {
      state.timers.files = setTimeout(loadFiles, again);
    }
  }

  /** Re-renders a list, keeping keyboard focus on the same logical control. */

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

  // ---- Shared folders: followed by the node, new files shared by themselves

  async function loadFolders() {
    const gen = state.generation;
    const res = await authed("GET", "/api/client/folders");
    if (gen !== state.generation || !state.token || !res.ok) return;
    const folders = Array.isArray(res.data.folders) ? res.data.folders : [];
    state.following = folders.length > 0;
    renderFolders(folders);
  }

  function renderFolders(folders) {
    const key = JSON.stringify(folders);
    if (key === state.foldersKey) return;
    state.foldersKey = key;
    $("#folders-card").hidden = folders.length === 0;
    keepFocus(() => setChildren($("#folders-list"), folders.map(folderRow)));
  }

  function folderRow(d) {
    const path = String(d.path);
    const facts = [P.plural(Number(d.files) || 0, "file", "files")];
    if (d.recursive) facts.push("with sub-folders");
    facts.push(d.publish ? "new files are published" : "new files are added, not published");
    facts.push(d.last_scan ? "looked " + P.formatTime(d.last_scan) : "not looked at yet");
    const skipped = Array.isArray(d.skipped) ? d.skipped : [];
    return el("li", { class: "folder-item", dataset: { path } },
      el("div", { class: "folder-main" },
        el("div", { class: "fname mono" }, path),
        el("div", { class: "sub" }, facts.join(" · ")),
        skipped.length
          ? el("ul", { class: "folder-skipped", "aria-label": "Not shared from " + path },
            skipped.slice(0, 20).map((s) => el("li", {}, String(s.path) + ": " + String(s.reason))))
          : null),
      el("button", {
        type: "button", class: "btn btn-ghost btn-small",
        dataset: { action: "unfollow", focusKey: "unfollow:" + path },
        "aria-label": "Stop following " + path,
        on: { click: (ev) => stopFollowing(path, ev.currentTarget) },
      }, "Stop following"));
  }

  async function stopFollowing(path, button) {
    P.setBusy(button, true, "Stopping…");
    const res = await authed("POST", "/api/client/remove-folder", { path });
    if (button.isConnected) P.setBusy(button, false);
    if (!res.ok) P.toast("Could not stop following " + path + ": " + res.error, "error");
    else P.toast("No longer following " + path + ". Its files stay in your list.", "ok");
    loadFiles();
  }

  async function rescanNow() {
    const btn = $("#folders-rescan");
    P.setBusy(btn, true, "Looking…");
    const res = await authed("POST", "/api/client/rescan", {});
    P.setBusy(btn, false);
    if (!res.ok) P.toast("Could not rescan: " + res.error, "error");
    else P.toast("Looked through your shared folders.", "ok");
    loadFiles();
  }

  async function followFolder(path) {
    const res = await authed("POST", "/api/client/add-folder", { path, publish: true });
    if (!res.ok) {
      P.toast("Could not share " + path + ": " + res.error, "error");
      return;
    }
    P.toast("Sharing " + path + ": files in it now, and files added to it later, are published.", "ok");
    loadFiles();
  }

  function wireFiles() {
    $("#folders-rescan").addEventListener("click", () => rescanNow());
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
      const follow = document.querySelector("#picker-follow");
      if (follow) follow.disabled = !current;
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
        { label: "Share this folder", value: "follow", id: "picker-follow" },
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
    // Follow the folder: what is in it now and what is added to it later.
    if (choice === "follow" && current) {
      await followFolder(current);
      return;
    }
    if (choice !== "all" || files.length === 0) return;
    // Every file is accounted for in the result: added, already there,
    // refused because another file of the same name is tracked, or failed.
    const tracked = new Set((state.files || []).map((f) => String(f.path)));
    let added = 0;
    let already = 0;
    const clashes = [];
    const failed = [];
    for (const path of files) {
      const name = path.split("/").pop();
      if (tracked.has(path)) {
        already += 1;
        continue;
      }
      const res = await addPath(path);
      if (res.ok) added += 1;
      else if (res.status === 409) clashes.push(name);
      else failed.push(name + ": " + res.error);
    }
    const names = (list) => list.slice(0, 5).join(", ") + (list.length > 5 ? " and " + (list.length - 5) + " more" : "");
    const parts = [added + " added"];
    if (already) parts.push(already + " already in your files");
    if (clashes.length) parts.push(clashes.length + " already tracked under the same name: " + names(clashes));
    if (failed.length) parts.push(failed.length + " could not be added: " + failed.slice(0, 3).join("; ") + (failed.length > 3 ? "…" : ""));
    P.toast("From " + current + ": " + parts.join("; ") + ".", failed.length ? "error" : clashes.length ? "info" : "ok");
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

  Object.assign(C, { loadFiles, loadFolders, wireFiles, publishFile, openPicker });
})();
