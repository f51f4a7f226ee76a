#!/usr/bin/env bash
# Runs every test of p2pshare: formatting and lints, the Rust unit and
# integration tests (real processes on port 0), the browser walk-through of
# the web UI in headless Chromium (installed here if missing), and a short
# run of every fuzz target (cargo-fuzz installed here if missing).
# Non-interactive; needs only the package registries.
set -euo pipefail
cd "$(dirname "$0")"
export CARGO_TERM_COLOR=never

echo "== format and lints"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings

echo "== build (release, every binary and bench tool)"
cargo build --release --workspace

echo "== Rust tests"
# Debug binaries hash passwords slowly; the tests lower the PBKDF2 count
# themselves where they need speed.
cargo test --workspace --release

echo "== browser test"
P2PSHARE_BIN="$PWD/target/release/p2pshare" bash tests/browser/run.sh

echo "== fuzz smoke (a few seconds per target; long runs: fuzz/README.md)"
bash fuzz/smoke.sh
