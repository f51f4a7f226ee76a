// End-to-end test of the p2pshare web UI: a real coordinator and two real
// nodes (the release binary, on port 0), driven only through the pages in a
// real headless Chromium. Run with `node --test ui.test.mjs` (see run.sh).
//
// It walks what a person would do: two users register on two nodes, one adds
// and publishes files, the other finds one in Network, fetches it and watches
// the progress bar reach 100 %, publishes a copy (duplicate dialog), and the
// admin checks both clients, pings one and lists its files. A file named like
// an XSS payload must show as plain text everywhere.

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import * as fs from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import readline from "node:readline";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

const here = path.dirname(fileURLToPath(import.meta.url));
const repoRoot = path.resolve(here, "../..");
const shotsDir = path.join(repoRoot, "target", "screenshots");

const XSS_NAME = "<img src=x onerror=alert(1)>.txt";
const BIG_NAME = "holiday-video.bin";
const COPY_NAME = "holiday-copy.bin";
const BIG_SIZE = 5 * 1024 * 1024 + 12345; // not a multiple of any chunk size
const UPLOAD_BPS = 2 * 1024 * 1024; // ~2.5 s for the big file
const STARTUP_MS = 30_000;
const UI_MS = 20_000;

function findBinary() {
  if (process.env.P2PSHARE_BIN) return path.resolve(process.env.P2PSHARE_BIN);
  const candidates = [
    path.join(repoRoot, "target", "release", "p2pshare"),
    path.join(repoRoot, "target", "debug", "p2pshare"),
  ];
  if (process.env.CARGO_TARGET_DIR) {
    const t = path.resolve(repoRoot, process.env.CARGO_TARGET_DIR);
    candidates.push(path.join(t, "release", "p2pshare"), path.join(t, "debug", "p2pshare"));
  }
  const found = candidates.find((c) => existsSync(c));
  if (!found) {
    throw new Error(
      "p2pshare binary not found; build it (cargo build --release) or set P2PSHARE_BIN. Looked in:\n  " +
        candidates.join("\n  "),
    );
  }
  return found;
}

// ---- Processes --------------------------------------------------------------

const children = [];
let tmpRoot = null;

/**
 * Starts a p2pshare process and resolves once every pattern has matched a
 * stdout line (the "listening on" lines are printed before serving, so no
 * sleeping or polling is needed). Resolves to the first capture group of each.
 */
function startProcess(name, bin, args, env, patterns) {
  const logPath = path.join(tmpRoot, name + ".log");
  const child = spawn(bin, args, {
    env: { ...process.env, ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  const entry = { name, child, logPath, log: [], exited: null };
  children.push(entry);
  const record = (stream, line) => {
    entry.log.push(`[${stream}] ${line}`);
    if (entry.log.length > 2000) entry.log.shift();
  };
  readline.createInterface({ input: child.stderr }).on("line", (l) => record("err", l));
  const out = readline.createInterface({ input: child.stdout });

  return new Promise((resolve, reject) => {
    const found = new Array(patterns.length).fill(null);
    const timer = setTimeout(
      () => reject(new Error(`${name}: no listening line within ${STARTUP_MS} ms\n${entry.log.join("\n")}`)),
      STARTUP_MS,
    );
    out.on("line", (line) => {
      record("out", line);
      patterns.forEach((re, i) => {
        const m = found[i] === null && re.exec(line);
        if (m) found[i] = m[1];
      });
      if (found.every((f) => f !== null)) {
        clearTimeout(timer);
        resolve(found);
      }
    });
    child.on("exit", (code, signal) => {
      entry.exited = { code, signal };
      clearTimeout(timer);
      reject(new Error(`${name} exited (code ${code}, signal ${signal}) before it was ready\n${entry.log.join("\n")}`));
    });
    child.on("error", (err) => {
      clearTimeout(timer);
      reject(new Error(`${name}: cannot start ${bin}: ${err.message}`));
    });
  });
}

async function stopAll() {
  await Promise.all(
    children.map(
      (entry) =>
        new Promise((resolve) => {
          const { child } = entry;
          if (child.exitCode !== null || child.signalCode !== null) return resolve();
          const kill = setTimeout(() => child.kill("SIGKILL"), 5000);
          child.once("exit", () => {
            clearTimeout(kill);
            resolve();
          });
          child.kill("SIGTERM");
        }),
    ),
  );
}

// Last resort if the runner itself is torn down: never leave servers behind.
process.on("exit", () => {
  for (const { child } of children) {
    if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
  }
});

/** A listener printed as `0.0.0.0:port` is reached through loopback. */
function loopback(addr) {
  return addr.replace("0.0.0.0", "127.0.0.1").replace("[::]", "127.0.0.1");
}

// ---- Shared state across the steps ----------------------------------------

const env = {
  adminPassword: "adm-" + randomBytes(12).toString("hex"),
  registry: null,
  adminUrl: null,
  nodeA: null,
  nodeB: null,
};
const files = {};
let browser = null;
const pages = {};
const watch = { dialogs: [], pageErrors: [], cspErrors: [] };
let failed = null;

async function sha256(file) {
  return createHash("sha256").update(await fs.readFile(file)).digest("hex");
}

/** Saves a screenshot; toasts are cleared first so the screen reads cleanly. */
async function shot(page, name, { keepToasts = false } = {}) {
  await fs.mkdir(shotsDir, { recursive: true });
  if (!keepToasts) await page.evaluate(() => document.getElementById("toasts")?.replaceChildren());
  await page.screenshot({ path: path.join(shotsDir, name + ".png"), fullPage: false });
}

async function newPage(label, url) {
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 }, deviceScaleFactor: 1 });
  context.setDefaultTimeout(UI_MS);
  const page = await context.newPage();
  page.on("dialog", async (d) => {
    watch.dialogs.push(`${label}: ${d.type()} ${d.message()}`);
    await d.dismiss().catch(() => {});
  });
  page.on("pageerror", (err) => watch.pageErrors.push(`${label}: ${err.message}`));
  page.on("console", (msg) => {
    if (msg.type() === "error" && /Content Security Policy/i.test(msg.text())) {
      watch.cspErrors.push(`${label}: ${msg.text()}`);
    }
  });
  const res = await page.goto(url);
  assert.ok(res && res.ok(), `${label}: GET / answered ${res && res.status()}`);
  const csp = res.headers()["content-security-policy"] || "";
  assert.match(csp, /default-src 'self'/, `${label}: Content-Security-Policy header missing on GET /`);
  pages[label] = page;
  return page;
}

/** Runs one step; after a failure the rest are skipped, not piled on. */
function step(name, fn) {
  test(name, { timeout: 120_000 }, async (t) => {
    if (failed) {
      t.skip(`earlier step failed: ${failed}`);
      return;
    }
    try {
      await fn(t);
    } catch (err) {
      failed = name;
      for (const [label, page] of Object.entries(pages)) {
        await shot(page, `failure-${label}`, { keepToasts: true }).catch(() => {});
      }
      throw err;
    }
  });
}

// Locators ------------------------------------------------------------------

function fileRow(page, name) {
  return page.locator("#files-body tr").filter({ has: page.locator(".fname", { hasText: name }) });
}

function networkRow(page, name) {
  return page.locator("#network-body tr").filter({ has: page.locator(".fname", { hasText: name }) });
}

async function registerUser(page, { username, display, password }) {
  await page.click("#tab-register");
  await page.fill("#reg-username", username);
  await page.fill("#reg-display", display);
  await page.fill("#reg-password", password);
  await page.click("#register-submit");
}

async function addFile(page, filePath) {
  await page.click("#nav-files");
  await page.fill("#add-path", filePath);
  await page.press("#add-path", "Enter"); // the form works from the keyboard
}

async function publishWhenHashed(page, name) {
  const row = fileRow(page, name);
  await row.waitFor();
  const publish = row.locator('button[data-action="publish"]');
  // Publish is disabled while the node computes the SHA-256.
  await assert.doesNotReject(publish.waitFor({ state: "visible" }));
  await page.waitForFunction(
    (n) =>
      Array.from(document.querySelectorAll("#files-body tr")).some(
        (tr) => tr.dataset.name === n && !tr.querySelector('button[data-action="publish"]').disabled,
      ),
    name,
    { timeout: 60_000 },
  );
  await publish.click();
}

// ---- Setup and teardown ----------------------------------------------------

before(async () => {
  tmpRoot = await fs.mkdtemp(path.join(os.tmpdir(), "p2pshare-ui-"));
  const bin = findBinary();

  // Test content: a ~5 MB random file, a copy of it for the duplicate check,
  // and a small file whose name is an XSS payload.
  const aliceDir = path.join(tmpRoot, "alice-files");
  const bobDir = path.join(tmpRoot, "bob-files");
  files.downloads = path.join(tmpRoot, "bob-downloads");
  await Promise.all([aliceDir, bobDir, files.downloads].map((d) => fs.mkdir(d, { recursive: true })));
  const bytes = randomBytes(BIG_SIZE);
  files.big = path.join(aliceDir, BIG_NAME);
  files.copy = path.join(bobDir, COPY_NAME);
  files.xss = path.join(aliceDir, XSS_NAME);
  files.saveAs = path.join(files.downloads, BIG_NAME);
  await fs.writeFile(files.big, bytes);
  await fs.writeFile(files.copy, bytes);
  await fs.writeFile(files.xss, "harmless text\n");
  files.bigSha = createHash("sha256").update(bytes).digest("hex");

  const common = { P2PSHARE_PBKDF2_ITERATIONS: "1000", RUST_BACKTRACE: "1" };
  const [registry, admin] = await startProcess(
    "coordinator",
    bin,
    ["coordinator", "--data-dir", path.join(tmpRoot, "coordinator"), "--registry-port", "0", "--admin-api-port", "0"],
    { ...common, ADMIN_PASSWORD: env.adminPassword },
    [/registry listening on (\S+)/, /admin api listening on (\S+)/],
  );
  env.registry = loopback(registry);
  env.adminUrl = loopback(admin).replace(/\/$/, "");
  const nodeArgs = (dir) => [
    "node",
    "--data-dir",
    path.join(tmpRoot, dir),
    "--client-api-port",
    "0",
    "--coordinator",
    env.registry,
    "--coordinator-api",
    env.adminUrl,
    "--port-range",
    "0-0",
    // Shared files and chosen download folders all live under tmpRoot.
    "--share-root",
    tmpRoot,
  ];
  // Alice's node uploads at a limited rate (--max-upload-rate), so the
  // download is seen mid-way (progress, speed, ETA, cancel) instead of
  // finishing within one poll.
  const paced = [...nodeArgs("node-a"), "--max-upload-rate", String(UPLOAD_BPS)];
  const [[a], [b]] = await Promise.all([
    startProcess("node-a", bin, paced, common, [/client api listening on (\S+)/]),
    startProcess("node-b", bin, nodeArgs("node-b"), common, [/client api listening on (\S+)/]),
  ]);
  env.nodeA = loopback(a).replace(/\/$/, "");
  env.nodeB = loopback(b).replace(/\/$/, "");

  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM_PATH || "/usr/bin/chromium",
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
  });
});

after(async () => {
  if (browser) await browser.close().catch(() => {});
  await stopAll();
  if (failed && tmpRoot) {
    // Keep the processes' output where a person can read it.
    for (const entry of children) {
      await fs.writeFile(entry.logPath, entry.log.join("\n") + "\n").catch(() => {});
      console.error(`--- ${entry.name} (last lines; full log ${entry.logPath}) ---`);
      console.error(entry.log.slice(-40).join("\n"));
    }
  } else if (tmpRoot) {
    await fs.rm(tmpRoot, { recursive: true, force: true });
  }
});

// ---- The walk-through --------------------------------------------------------

const alice = { username: "alice", display: "Alice Example", password: "correct horse battery" };
const bob = { username: "bob_2", display: "Bob", password: "another good password" };

step("client login page: wrong password and short password get clear messages", async () => {
  const page = await newPage("alice", env.nodeA + "/");
  await page.locator("#login-form").waitFor();
  await shot(page, "client-login");

  await page.fill("#login-username", "nobody");
  await page.fill("#login-password", "wrong-password");
  await page.click("#login-submit");
  await assert.doesNotReject(
    page.locator("#login-msg", { hasText: "Wrong username or password." }).waitFor(),
  );

  await page.click("#tab-register");
  await page.fill("#reg-username", alice.username);
  await page.fill("#reg-password", "short");
  await page.click("#register-submit");
  await page.locator("#register-msg", { hasText: "at least 8 characters" }).waitFor();
});

step("alice registers; the session starts by itself and the status bar shows the coordinator", async () => {
  const page = pages.alice;
  await registerUser(page, alice);
  await page.locator("#app-view").waitFor();
  await page.locator("#view-files").waitFor();
  assert.equal(await page.textContent("#user-name"), alice.display);
  await page.locator("#sb-coordinator", { hasText: "Connected to coordinator" }).waitFor();
  await page.locator("#sb-port", { hasText: /Peer port \d+/ }).waitFor();
  await page.locator("#sb-heartbeat", { hasText: /Heartbeat: (idle|active|busy)/ }).waitFor();
  const token = await page.evaluate(() => localStorage.getItem("p2pshare.client.token"));
  assert.ok(token && token.split(".").length === 3, "token kept in localStorage");
});

step("alice adds files by path and publishes them", async () => {
  const page = pages.alice;
  await addFile(page, path.join(tmpRoot, "no-such-file.bin"));
  await page.locator("#add-msg:not([hidden])").waitFor();
  assert.ok((await page.textContent("#add-msg")).trim().length > 10, "a missing path is explained");
  await addFile(page, files.big);
  await publishWhenHashed(page, BIG_NAME);
  await fileRow(page, BIG_NAME).locator(".badge", { hasText: "Published" }).waitFor();
  const row = fileRow(page, BIG_NAME);
  assert.equal(await row.locator(".hash").getAttribute("title"), files.bigSha, "SHA-256 shown");
  await row.locator("td", { hasText: "5.01 MB" }).waitFor();

  await addFile(page, files.xss);
  await publishWhenHashed(page, XSS_NAME);
  await fileRow(page, XSS_NAME).locator(".badge", { hasText: "Published" }).waitFor();
  await page.locator("#sb-host", { hasText: "2 shared" }).waitFor();
  await shot(page, "client-files");
});

step("alice browses for files: the picker shows the share root but never the node's data", async () => {
  const page = pages.alice;
  const picks = path.join(tmpRoot, "alice-picks");
  await fs.mkdir(picks, { recursive: true });
  await fs.writeFile(path.join(picks, "notes-one.txt"), "one\n");
  await fs.writeFile(path.join(picks, "notes-two.txt"), "two\n");
  await page.click("#nav-files");
  await page.click("#add-browse");
  const dlg = page.locator("#picker-dialog");
  await dlg.waitFor();
  // The share root, then the folder inside it.
  await dlg.locator(".picker-dir").first().click();
  await dlg.locator(".picker-dir", { hasText: "alice-picks" }).waitFor();
  assert.equal(await dlg.locator(".picker-item", { hasText: "node-a" }).count(), 0, "the node's data directory is not listed");
  await dlg.locator(".picker-dir", { hasText: "alice-picks" }).click();
  await dlg.locator(".picker-file", { hasText: "notes-two.txt" }).waitFor();
  await shot(page, "client-picker");
  await page.locator("#picker-add-all", { hasText: "Add all 2 files here" }).click();
  await dlg.waitFor({ state: "detached" });
  await fileRow(page, "notes-one.txt").waitFor();
  await fileRow(page, "notes-two.txt").waitFor();
  await page.locator(".toast", { hasText: "2 added." }).waitFor();

  // Another folder with a file of a name already tracked: the collision is
  // listed in the result, not dropped silently.
  const more = path.join(tmpRoot, "alice-more");
  await fs.mkdir(more, { recursive: true });
  await fs.writeFile(path.join(more, "notes-one.txt"), "another one\n");
  await fs.writeFile(path.join(more, "notes-three.txt"), "three\n");
  await page.click("#add-browse");
  await dlg.waitFor();
  await dlg.locator(".picker-dir").first().click();
  await dlg.locator(".picker-dir", { hasText: "alice-more" }).click();
  await dlg.locator(".picker-file", { hasText: "notes-three.txt" }).waitFor();
  await page.locator("#picker-add-all", { hasText: "Add all 2 files here" }).click();
  await dlg.waitFor({ state: "detached" });
  await page.locator(".toast", { hasText: "1 added; 1 already tracked under the same name: notes-one.txt" }).waitFor();
  await fileRow(page, "notes-three.txt").waitFor();
});

step("alice shares a whole folder: a file created in it later is published after Rescan now", async () => {
  const page = pages.alice;
  const inbox = path.join(tmpRoot, "alice-inbox");
  await fs.mkdir(inbox, { recursive: true });
  await fs.writeFile(path.join(inbox, "inbox-first.txt"), "there before\n");
  await page.click("#nav-files");
  await page.click("#add-browse");
  const dlg = page.locator("#picker-dialog");
  await dlg.waitFor();
  await dlg.locator(".picker-dir").first().click();
  await dlg.locator(".picker-dir", { hasText: "alice-inbox" }).click();
  await dlg.locator(".picker-file", { hasText: "inbox-first.txt" }).waitFor();
  await page.locator("#picker-follow", { hasText: "Share this folder" }).click();
  await dlg.waitFor({ state: "detached" });
  await page.locator(".toast", { hasText: "files added to it later" }).waitFor();
  const folder = page.locator("#folders-list .folder-item", { hasText: "alice-inbox" });
  await folder.waitFor();
  await fileRow(page, "inbox-first.txt").locator(".badge", { hasText: "Published" }).waitFor();

  await fs.writeFile(path.join(inbox, "inbox-later.txt"), "dropped in afterwards\n");
  await page.click("#folders-rescan");
  await fileRow(page, "inbox-later.txt").locator(".badge", { hasText: "Published" }).waitFor();
  await folder.locator(".sub", { hasText: "2 files" }).waitFor();
  await shot(page, "client-shared-folder");
});

step("a shared file edited on disk is announced on any page, not only in My files", async () => {
  const page = pages.alice;
  await publishWhenHashed(page, "notes-one.txt");
  await fileRow(page, "notes-one.txt").locator(".badge", { hasText: "Published" }).waitFor();
  await page.click("#nav-network");
  await fs.appendFile(path.join(tmpRoot, "alice-picks", "notes-one.txt"), "edited\n");
  // The node looks at every tracked file every 10 s.
  await page.locator(".toast", { hasText: "changed on disk" }).waitFor({ timeout: 30_000 });
  await page.locator("#nav-files-badge", { hasText: "1" }).waitFor();
  await shot(page, "client-changed-file", { keepToasts: true });
  await page.click("#nav-files");
});

step("a changed shared file keeps a banner on every page until published again in one click", async () => {
  const page = pages.alice;
  const banner = page.locator("#notice-banner");
  for (const view of ["#nav-network", "#nav-downloads", "#nav-files"]) {
    await page.click(view);
    await banner.locator("li", { hasText: "notes-one.txt" }).waitFor();
  }
  await page.click("#nav-network");
  await shot(page, "client-notice-banner");
  await banner.locator('button[data-notice="notes-one.txt"]').click();
  await page.locator(".toast", { hasText: "shared again" }).waitFor({ timeout: 60_000 });
  await banner.waitFor({ state: "hidden" });
  await page.locator("#nav-files-badge").waitFor({ state: "hidden" });
  await page.click("#nav-files");
  await fileRow(page, "notes-one.txt").locator(".badge", { hasText: "Published" }).waitFor();
});

step("a taken username is refused with a clear message; bob registers on the second node", async () => {
  const page = await newPage("bob", env.nodeB + "/");
  await registerUser(page, { ...bob, username: alice.username });
  await page.locator("#register-msg", { hasText: "is already taken" }).waitFor();
  await registerUser(page, bob);
  await page.locator("#app-view").waitFor();
  await page.locator("#sb-coordinator", { hasText: "Connected to coordinator" }).waitFor();
});

step("bob finds alice's file in Network with its host online", async () => {
  const page = pages.bob;
  await page.click("#nav-network");
  await page.fill("#search-q", "holiday");
  await page.press("#search-q", "Enter");
  const row = networkRow(page, BIG_NAME);
  await row.waitFor();
  await row.locator(".host", { hasText: alice.display }).locator(".host-state", { hasText: "online" }).waitFor();
  await row.locator("td", { hasText: "5.01 MB" }).waitFor();
  assert.equal(await networkRow(page, XSS_NAME).count(), 0, "search narrows the list");
  await page.locator("#network-range", { hasText: "1–1 of 1 file" }).waitFor();
  await shot(page, "client-network");
});

step("bob fetches it to a chosen path and watches the progress bar reach 100%", async () => {
  const page = pages.bob;
  await networkRow(page, BIG_NAME).locator('button[data-action="fetch"]').click();
  const dlg = page.locator("#fetch-dialog");
  await dlg.waitFor();
  await dlg.locator("#fetch-save-path").fill(files.saveAs);
  await dlg.locator("#fetch-start").click();
  await dlg.waitFor({ state: "detached" });

  await page.click("#nav-downloads");
  const card = page.locator(".transfer").filter({ has: page.locator(".fname", { hasText: BIG_NAME }) });
  await card.waitFor();

  // Watch the bar as a person would: sample it until it reaches 100 %.
  const bar = card.locator('[role="progressbar"]');
  const seen = new Set();
  let midShot = false;
  const deadline = Date.now() + 60_000;
  for (;;) {
    const v = Number(await bar.getAttribute("aria-valuenow"));
    seen.add(v);
    if (v >= 100) break;
    if (!midShot && v > 10) {
      await card.locator(".badge", { hasText: "Downloading" }).waitFor();
      await card.locator('[data-part="speed"]', { hasText: /\/s$/ }).waitFor();
      await card.locator('[data-part="eta"]', { hasText: / s$/ }).waitFor();
      // Each computer sending it is listed with its share and state.
      await card.locator(".transfer-peers .peer", { hasText: "sending" }).waitFor();
      await shot(page, "client-downloads-active");
      midShot = true;
    }
    assert.ok(Date.now() < deadline, "download did not finish within 60 s");
    await new Promise((r) => setTimeout(r, 100));
  }
  const between = [...seen].filter((v) => v > 0 && v < 100);
  assert.ok(between.length >= 2, `progress moved in steps while downloading (saw ${[...seen].join(", ")})`);
  assert.ok(midShot, "the transfer was seen mid-way");
  await card.locator(".badge", { hasText: "Completed" }).waitFor();
  assert.equal((await card.locator(".progress-pct").textContent()).trim(), "100%");
  await card.locator('[data-part="bytes"]', { hasText: "5.01 MB of 5.01 MB" }).waitFor();
  await shot(page, "client-downloads");

  const got = await sha256(files.saveAs);
  assert.equal(got, files.bigSha, "fetched bytes equal the original");
  const stat = await fs.stat(files.saveAs);
  assert.equal(stat.size, BIG_SIZE);
});

step("a download can be paused, resumed and cancelled mid-way and leaves no file behind", async () => {
  const page = pages.bob;
  await page.click("#nav-network");
  await networkRow(page, BIG_NAME).locator('button[data-action="fetch"]').click();
  const dlg = page.locator("#fetch-dialog");
  const target = path.join(files.downloads, "cancelled.bin");
  await dlg.locator("#fetch-save-path").fill(target);
  await dlg.locator("#fetch-start").click();
  await dlg.waitFor({ state: "detached" });
  await page.click("#nav-downloads");
  const card = page.locator(".transfer").filter({ has: page.locator(".transfer-path", { hasText: "cancelled.bin" }) });
  await card.locator(".badge", { hasText: "Downloading" }).waitFor();
  await page.locator("#downloads-badge", { hasText: "1" }).waitFor();
  // Pause keeps it (and can still be cancelled); resume goes on.
  await card.locator('button[data-part="pause"]', { hasText: "Pause" }).click();
  await card.locator(".badge", { hasText: "Paused" }).waitFor();
  await card.locator('button[data-part="pause"]', { hasText: "Resume" }).click();
  await card.locator(".badge", { hasText: "Downloading" }).waitFor();
  await card.locator('button[data-part="cancel"]').click();
  await card.locator(".badge", { hasText: "Cancelled" }).waitFor();
  await assert.doesNotReject(card.locator('button[data-part="cancel"]').waitFor({ state: "hidden" }));
  await page.locator("#downloads-badge").waitFor({ state: "hidden" });
  assert.equal(existsSync(target), false, "no file under the final name after a cancel");
});

step("a download's absolute path can be copied, and finished downloads cleared without touching files", async () => {
  const page = pages.bob;
  await page.context().grantPermissions(["clipboard-read", "clipboard-write"], { origin: new URL(page.url()).origin });
  const card = page.locator(".transfer").filter({ has: page.locator(".transfer-path", { hasText: files.saveAs }) });
  await card.locator(".badge", { hasText: "Completed" }).waitFor();
  await card.locator('button[data-part="copy"]').click();
  await page.locator(".toast", { hasText: "Copied" }).waitFor();
  assert.equal(await page.evaluate(() => navigator.clipboard.readText()), files.saveAs);
  assert.ok(path.isAbsolute(files.saveAs));

  const clear = page.locator("#downloads-clear");
  await clear.click();
  await page.locator(".toast", { hasText: "Cleared 2 finished downloads" }).waitFor();
  await page.locator(".transfer").first().waitFor({ state: "detached" });
  await page.locator("#downloads-empty").waitFor();
  await clear.waitFor({ state: "hidden" });
  assert.equal(await sha256(files.saveAs), files.bigSha, "the downloaded file stays");
});

step("bob publishes a copy of the same bytes: the duplicate dialog lists alice's file", async () => {
  const page = pages.bob;
  await addFile(page, files.copy);
  await publishWhenHashed(page, COPY_NAME);
  const dlg = page.locator("#duplicate-dialog");
  await dlg.waitFor();
  const dup = dlg.locator(".dup-item").filter({ hasText: BIG_NAME });
  await dup.waitFor();
  await dup.locator(".sub", { hasText: alice.display }).first().waitFor();
  await dup.locator(".sub", { hasText: "Same content" }).waitFor();
  await shot(page, "client-dialog-duplicate");
  await dlg.locator("#dup-publish-anyway").click();
  await dlg.waitFor({ state: "detached" });
  await fileRow(page, COPY_NAME).locator(".badge", { hasText: "Published" }).waitFor();
});

step("the XSS file name renders as text and runs nothing", async () => {
  const page = pages.bob;
  await page.click("#nav-network");
  await page.fill("#search-q", "onerror");
  await page.press("#search-q", "Enter");
  const name = networkRow(page, XSS_NAME).locator(".fname");
  await name.waitFor();
  assert.equal(await name.textContent(), XSS_NAME);
  assert.ok(await name.isVisible());

  const aliceName = fileRow(pages.alice, XSS_NAME).locator(".fname");
  assert.equal(await aliceName.textContent(), XSS_NAME);

  for (const [label, p] of Object.entries(pages)) {
    assert.equal(await p.locator("img").count(), 0, `${label}: no <img> element was created`);
  }
  assert.deepEqual(watch.dialogs, [], "no alert/confirm/prompt fired");
});

step("admin logs in, sees both clients live on the dashboard", async () => {
  const page = await newPage("admin", env.adminUrl + "/");
  await page.locator("#login-form").waitFor();
  await page.fill("#login-password", env.adminPassword);
  await page.press("#login-password", "Enter");
  await page.locator("#view-dashboard").waitFor();
  await page.locator("#stat-online", { hasText: /^2$/ }).waitFor();
  await page.locator("#live-text", { hasText: "Live" }).waitFor();
  // The chart grows by one sample a second; wait for ten of them.
  await page.waitForFunction(() => {
    const line = document.querySelector("#ops-chart .line-ops");
    return line && line.getAttribute("points").trim().split(" ").length >= 10;
  });
  const rows = await page.locator("#latency-body tr").count();
  assert.ok(rows >= 8, "one latency row per registry action");
  await page.locator("#latency-body tr", { hasText: "PUBLISH" }).locator("td", { hasText: /ms$/ }).first().waitFor();
  await shot(page, "admin-dashboard");
});

step("admin clients table: search, ping (rtt shown) and discover files", async () => {
  const page = pages.admin;
  await page.click("#nav-clients");
  const rowOf = (display) =>
    page.locator("#clients-body tr").filter({ has: page.locator(".sub, .fname", { hasText: display }) });
  await rowOf(alice.display).waitFor();
  await rowOf(bob.display).waitFor();
  await page.locator("#clients-range", { hasText: "1–2 of 2 clients" }).waitFor();

  await page.fill("#clients-q", "alice");
  await page.press("#clients-q", "Enter");
  await page.locator("#clients-range", { hasText: "1–1 of 1 client" }).waitFor();
  const aliceRow = rowOf(alice.display);
  await aliceRow.locator(".badge", { hasText: "Online" }).waitFor();

  await aliceRow.locator('button[data-action="ping"]').click();
  await aliceRow.locator(".ping-result", { hasText: /\d ms$/ }).waitFor();

  await page.fill("#clients-q", "");
  await page.press("#clients-q", "Enter");
  await rowOf(bob.display).waitFor();
  await shot(page, "admin-clients");

  await rowOf(alice.display).locator('button[data-action="discover"]').click();
  const dlg = page.locator("#discover-dialog");
  await dlg.waitFor();
  await dlg.locator(".fname", { hasText: BIG_NAME }).waitFor();
  const xss = dlg.locator(".fname", { hasText: XSS_NAME });
  assert.equal(await xss.textContent(), XSS_NAME);
  await shot(page, "admin-discover");
  await page.keyboard.press("Escape");
  await dlg.waitFor({ state: "detached" });
  assert.equal(await page.locator("img").count(), 0);
});

step("admin sees each user's node credential and can revoke one", async () => {
  const page = pages.admin;
  await page.click("#nav-credentials");
  const rowOf = (user) => page.locator("#cred-body tr").filter({ has: page.locator(".fname", { hasText: user }) });
  await rowOf(alice.username).locator(".badge", { hasText: "Active" }).waitFor();
  await rowOf(bob.username).locator(".badge", { hasText: "Active" }).waitFor();
  await shot(page, "admin-credentials");
  // Revoking bob's takes his host offline at once (his node connects again
  // with his login's token, which is still valid, so he comes back).
  await rowOf(bob.username).locator('button[data-action="revoke"]').click();
  await rowOf(bob.username).locator(".badge", { hasText: "Revoked" }).waitFor();
  assert.equal(await rowOf(bob.username).locator('button[data-action="revoke"]').count(), 0);
});

step("a reload and a second tab keep the login (token in localStorage)", async () => {
  const page = pages.bob;
  await page.reload();
  await page.locator("#app-view").waitFor();
  await page.locator("#sb-coordinator", { hasText: "Connected to coordinator" }).waitFor();
  assert.equal(await page.locator("#auth-view").isVisible(), false);
  // A second tab of the same browser is logged in too.
  const second = await page.context().newPage();
  await second.goto(page.url());
  await second.locator("#app-view").waitFor();
  await second.locator("#sb-coordinator", { hasText: "Connected to coordinator" }).waitFor();
  assert.equal(await second.locator("#auth-view").isVisible(), false);
  await second.close();
});

step("the pages work on a phone-sized window", async () => {
  const page = pages.bob;
  await page.setViewportSize({ width: 390, height: 844 });
  await page.click("#nav-files");
  await fileRow(page, COPY_NAME).waitFor();
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  assert.ok(overflow <= 1, `no horizontal scrolling on a phone (overflow ${overflow}px)`);
  // A stack of toasts never covers a button (Add file, Publish, Remove…).
  await page.evaluate(() => {
    for (let i = 0; i < 3; i += 1) window.P2P.toast("A notice long enough to wrap on a phone screen, number " + i, "info");
  });
  const covered = await page.evaluate(() => {
    const hit = (a, b) => a.left < b.right && b.left < a.right && a.top < b.bottom && b.top < a.bottom;
    const toasts = Array.from(document.querySelectorAll(".toast")).map((t) => t.getBoundingClientRect());
    return Array.from(document.querySelectorAll("main button"))
      .filter((b) => b.offsetParent !== null)
      .filter((b) => toasts.some((t) => hit(t, b.getBoundingClientRect())))
      .map((b) => b.textContent.trim());
  });
  assert.deepEqual(covered, [], "toasts cover these buttons on a phone");
  await shot(page, "client-files-phone", { keepToasts: true });
  await page.setViewportSize({ width: 1280, height: 800 });
});

step("logging out clears the token and shows the login form", async () => {
  const page = pages.alice;
  await page.click("#logout-btn");
  await page.locator("#login-form").waitFor();
  await page.locator("#login-msg", { hasText: "You have logged out." }).waitFor();
  const token = await page.evaluate(() => localStorage.getItem("p2pshare.client.token"));
  assert.equal(token, null);

  // Logging back in starts the session again by itself.
  await page.fill("#login-username", alice.username);
  await page.fill("#login-password", alice.password);
  await page.press("#login-password", "Enter");
  await page.locator("#view-files").waitFor();
  await page.locator("#sb-coordinator", { hasText: "Connected to coordinator" }).waitFor();
});

step("no script errors and no CSP violations on any page", async () => {
  assert.deepEqual(watch.pageErrors, []);
  assert.deepEqual(watch.cspErrors, []);
  assert.deepEqual(watch.dialogs, []);
});
