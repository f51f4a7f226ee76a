// p2pshare web UI: helpers shared by the client UI (app.js) and the admin UI
// (admin.js). Owns the JSON fetch wrapper, number/time formatting, a DOM
// element builder, toasts and dialogs. It never builds HTML from strings:
// every user- or peer-supplied text goes into the page as a text node, so a
// file called `<img src=x onerror=alert(1)>.txt` is shown, never run.
"use strict";

(function () {
  const SVG_NS = "http://www.w3.org/2000/svg";

  /**
   * Builds an element. `attrs` keys: `class`, `text` (textContent), `on`
   * ({event: handler}), `dataset`, `aria-*`/other attributes (setAttribute,
   * skipped when null/undefined/false), plus DOM properties for `value`,
   * `checked`, `disabled`, `hidden`. Children may be nodes, strings (as
   * text), arrays, or null (skipped).
   */
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    applyAttrs(node, attrs);
    append(node, children);
    return node;
  }

  /** Same as `el` for SVG elements (charts, icons). */
  function svg(tag, attrs, ...children) {
    const node = document.createElementNS(SVG_NS, tag);
    applyAttrs(node, attrs);
    append(node, children);
    return node;
  }

  const PROPS = new Set(["value", "checked", "disabled", "hidden", "selected", "open"]);

  function applyAttrs(node, attrs) {
    if (!attrs) return;
    for (const [key, val] of Object.entries(attrs)) {
      if (val === null || val === undefined || val === false) continue;
      if (key === "text") node.textContent = String(val);
      else if (key === "class") node.setAttribute("class", val);
      else if (key === "on") {
        for (const [ev, fn] of Object.entries(val)) node.addEventListener(ev, fn);
      } else if (key === "dataset") Object.assign(node.dataset, val);
      else if (PROPS.has(key)) node[key] = val;
      else if (key === "style") {
        // The CSP forbids style attributes; setting properties is allowed.
        Object.assign(node.style, val);
      } else node.setAttribute(key, val === true ? "" : String(val));
    }
  }

  function append(node, children) {
    for (const child of children) {
      if (child === null || child === undefined || child === false) continue;
      if (Array.isArray(child)) append(node, child);
      else if (child instanceof Node) node.appendChild(child);
      else node.appendChild(document.createTextNode(String(child)));
    }
  }

  /** Replaces all children of `node`. */
  function setChildren(node, ...children) {
    node.replaceChildren();
    append(node, children);
  }

  function $(selector, root) {
    return (root || document).querySelector(selector);
  }

  function $$(selector, root) {
    return Array.from((root || document).querySelectorAll(selector));
  }

  // ---- HTTP ----------------------------------------------------------------

  /**
   * Calls the JSON API. Resolves to `{ok, status, data, error}`; never
   * rejects, so callers handle every failure in one place. `error` is a
   * sentence a person can read.
   */
  async function api(method, path, body, token) {
    const headers = { Accept: "application/json" };
    // The node refuses POST and DELETE without it: a foreign page cannot
    // send it without a CORS preflight, which the node never grants.
    if (body !== undefined || method === "POST" || method === "DELETE") {
      headers["Content-Type"] = "application/json";
    }
    if (token) headers.Authorization = "Bearer " + token;
    let res;
    try {
      res = await fetch(path, {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
        cache: "no-store",
        credentials: "same-origin",
      });
    } catch (_) {
      return {
        ok: false,
        status: 0,
        data: null,
        error: "Cannot reach the p2pshare service. Check that it is still running.",
      };
    }
    let data = null;
    try {
      data = await res.json();
    } catch (_) {
      data = null;
    }
    const ok = res.ok && !(data && data.success === false);
    let error = null;
    if (!ok) {
      error = (data && typeof data.error === "string" && data.error) || statusText(res.status);
    }
    return { ok, status: res.status, data, error };
  }

  function statusText(status) {
    switch (status) {
      case 400: return "The request was not accepted.";
      case 401: return "Your session has ended. Please log in again.";
      case 403: return "That is not allowed.";
      case 404: return "Not found.";
      case 409: return "That conflicts with the current state.";
      case 413: return "The request is too large.";
      case 503: return "The service is busy. Try again in a moment.";
      default: return "Unexpected answer from the server (HTTP " + status + ").";
    }
  }

  // ---- Formatting ----------------------------------------------------------

  const UNITS = ["B", "KB", "MB", "GB", "TB", "PB"];

  /** 1536 → "1.5 KB" (powers of 1024, the units file managers show). */
  function formatBytes(n) {
    if (typeof n !== "number" || !isFinite(n) || n < 0) return "—";
    if (n < 1024) return n + " B";
    let i = 0;
    let v = n;
    // Step up at 1000 so rounding never shows "1024 KB" for almost 1 MB.
    while (v >= 1000 && i < UNITS.length - 1) {
      v /= 1024;
      i += 1;
    }
    return (v >= 100 ? v.toFixed(0) : v >= 10 ? v.toFixed(1) : v.toFixed(2)) + " " + UNITS[i];
  }

  function formatSpeed(bps) {
    if (typeof bps !== "number" || !isFinite(bps) || bps <= 0) return "—";
    return formatBytes(Math.round(bps)) + "/s";
  }

  /** Seconds → "45 s", "3 min 20 s", "2 h 5 min"; unknown → "—". */
  function formatDuration(s) {
    if (typeof s !== "number" || !isFinite(s) || s < 0) return "—";
    s = Math.round(s);
    if (s < 60) return s + " s";
    if (s < 3600) {
      const m = Math.floor(s / 60);
      const r = s % 60;
      return r ? m + " min " + r + " s" : m + " min";
    }
    if (s < 86400) {
      const h = Math.floor(s / 3600);
      const m = Math.floor((s % 3600) / 60);
      return m ? h + " h " + m + " min" : h + " h";
    }
    const d = Math.floor(s / 86400);
    const h = Math.floor((s % 86400) / 3600);
    return h ? d + " d " + h + " h" : d + " d";
  }

  function pad2(n) {
    return n < 10 ? "0" + n : String(n);
  }

  /** Unix seconds → "2024-11-25 17:21" in local time. */
  function formatTime(unix) {
    if (typeof unix !== "number" || !isFinite(unix) || unix <= 0) return "—";
    const d = new Date(unix * 1000);
    return (
      d.getFullYear() + "-" + pad2(d.getMonth() + 1) + "-" + pad2(d.getDate()) +
      " " + pad2(d.getHours()) + ":" + pad2(d.getMinutes())
    );
  }

  /** Unix seconds → "12 s ago", "5 min ago", or the date when old. */
  function formatAgo(unix) {
    if (typeof unix !== "number" || !isFinite(unix) || unix <= 0) return "—";
    const diff = Date.now() / 1000 - unix;
    if (diff < 2) return "just now";
    if (diff < 86400) return formatDuration(diff) + " ago";
    return formatTime(unix);
  }

  function shortHash(hex) {
    if (typeof hex !== "string" || hex.length === 0) return "—";
    return hex.length > 12 ? hex.slice(0, 12) + "…" : hex;
  }

  function formatMs(ms) {
    if (typeof ms !== "number" || !isFinite(ms)) return "—";
    if (ms < 1) return ms.toFixed(2) + " ms";
    if (ms < 100) return ms.toFixed(1) + " ms";
    return Math.round(ms) + " ms";
  }

  function plural(n, one, many) {
    return n + " " + (n === 1 ? one : many);
  }

  // ---- Toasts --------------------------------------------------------------

  /** Shows a short message at the bottom; `kind` is "ok", "error" or "info". */
  function toast(message, kind) {
    let host = $("#toasts");
    if (!host) {
      host = el("div", { id: "toasts", class: "toasts", role: "status", "aria-live": "polite" });
      // First in the page's main area: floating on wide screens, in the
      // flow on phones, where any overlay would cover a button (style.css).
      const main = document.querySelector("main");
      if (main) main.prepend(host);
      else document.body.appendChild(host);
    }
    const item = el("div", {
      class: "toast toast-" + (kind || "info"),
      title: "Click to dismiss",
      on: { click: () => item.remove() },
    }, message);
    host.appendChild(item);
    // A burst of actions should not bury the page: keep the newest three.
    while (host.children.length > 3) host.firstElementChild.remove();
    const ttl = kind === "error" ? 7000 : 3500;
    setTimeout(() => {
      item.classList.add("toast-out");
      setTimeout(() => item.remove(), 300);
    }, ttl);
  }

  // ---- Dialogs -------------------------------------------------------------

  /**
   * Opens a modal <dialog>. `body` is a node or array of nodes; `actions`
   * is a list of {label, kind ("primary"/"danger"/""), value, id}. Resolves
   * to the clicked action's value, or null when dismissed (Esc or Cancel).
   * A native dialog traps focus and closes on Esc, so it is keyboard-usable.
   */
  function openDialog({ title, body, actions, id, wide, onSubmit }) {
    return new Promise((resolve) => {
      const titleId = "dlg-title-" + Math.random().toString(36).slice(2, 8);
      const buttons = (actions || [{ label: "Close", value: null }]).map((a) =>
        el("button", {
          type: a.submit ? "submit" : "button",
          class: "btn " + (a.kind ? "btn-" + a.kind : "btn-ghost"),
          id: a.id,
          dataset: { value: a.value === null || a.value === undefined ? "" : String(a.value) },
          on: a.submit ? null : { click: () => finish(a.value === undefined ? null : a.value) },
        }, a.label)
      );
      const form = el("form", { class: "dialog-form", method: "dialog" },
        el("header", { class: "dialog-head" },
          el("h2", { id: titleId, text: title }),
          el("button", {
            type: "button", class: "icon-btn", "aria-label": "Close",
            on: { click: () => finish(null) },
          }, "×")),
        el("div", { class: "dialog-body" }, body),
        el("footer", { class: "dialog-actions" }, buttons));
      const dlg = el("dialog", {
        class: "dialog" + (wide ? " dialog-wide" : ""),
        id: id,
        "aria-labelledby": titleId,
      }, form);
      let done = false;
      function finish(value) {
        if (done) return;
        done = true;
        if (dlg.open) dlg.close();
        dlg.remove();
        resolve(value);
      }
      form.addEventListener("submit", async (ev) => {
        ev.preventDefault();
        if (onSubmit) {
          const result = await onSubmit(form);
          if (result === false) return;
          finish(result === undefined ? true : result);
        } else {
          const submitAction = (actions || []).find((a) => a.submit);
          finish(submitAction ? submitAction.value : true);
        }
      });
      dlg.addEventListener("cancel", (ev) => {
        ev.preventDefault();
        finish(null);
      });
      document.body.appendChild(dlg);
      dlg.showModal();
      const focusTarget = dlg.querySelector("[autofocus]") ||
        dlg.querySelector(".dialog-actions .btn-primary") ||
        dlg.querySelector(".dialog-actions .btn");
      if (focusTarget) focusTarget.focus();
    });
  }

  // ---- Forms ---------------------------------------------------------------

  /** A labelled input: returns {wrap, input}. */
  function field(label, attrs, hint) {
    const id = attrs.id || "f-" + Math.random().toString(36).slice(2, 9);
    const hintId = hint ? id + "-hint" : null;
    const input = el("input", Object.assign({ id, "aria-describedby": hintId }, attrs));
    const wrap = el("div", { class: "field" },
      el("label", { for: id, text: label }),
      input,
      hint ? el("p", { class: "hint", id: hintId, text: hint }) : null);
    return { wrap, input };
  }

  function setBusy(button, busy, busyLabel) {
    if (busy) {
      if (!button.dataset.label) button.dataset.label = button.textContent;
      button.textContent = busyLabel || button.textContent;
      button.disabled = true;
      button.setAttribute("aria-busy", "true");
    } else {
      if (button.dataset.label) button.textContent = button.dataset.label;
      delete button.dataset.label;
      button.disabled = false;
      button.removeAttribute("aria-busy");
    }
  }

  /** Shows a message in a form's live region; empty text hides it. */
  function formMessage(node, text, kind) {
    node.textContent = text || "";
    node.className = "form-msg" + (text ? " form-msg-" + (kind || "error") : "");
    node.hidden = !text;
  }

  // ---- Storage -------------------------------------------------------------

  /** Key-value storage that never throws: `store` lasts for the tab,
   *  `keep` across tabs and restarts of the browser (the client's login). */
  function storage(kind) {
    return {
      get(key) {
        try {
          return window[kind].getItem(key);
        } catch (_) {
          return null;
        }
      },
      set(key, value) {
        try {
          window[kind].setItem(key, value);
        } catch (_) {
          /* private mode: the session just won't survive a reload */
        }
      },
      remove(key) {
        try {
          window[kind].removeItem(key);
        } catch (_) {
          /* nothing stored */
        }
      },
    };
  }
  const store = storage("sessionStorage");
  const keep = storage("localStorage");

  /** Delays `fn` until `ms` have passed without another call. */
  function debounce(fn, ms) {
    let t = null;
    return (...args) => {
      clearTimeout(t);
      t = setTimeout(() => fn(...args), ms);
    };
  }

  window.P2P = {
    el, svg, setChildren, $, $$, api,
    formatBytes, formatSpeed, formatDuration, formatTime, formatAgo, shortHash, formatMs, plural,
    toast, openDialog, field, setBusy, formMessage, store, keep, debounce,
  };
})();
