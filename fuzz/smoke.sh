#!/usr/bin/env bash
# Fuzz smoke test: builds the cargo-fuzz targets and runs each one for a few
# seconds from its committed seeds and regression inputs. Fails if any target
# finds a crash (the input is left in fuzz/artifacts/<target>/). Prints the
# executions each target ran.
#
#   fuzz/smoke.sh                  # every target, 5 s each
#   FUZZ_SECONDS=600 fuzz/smoke.sh registry_line   # one target, longer
#
# Non-interactive; needs only the Rust toolchain servers and crates.io (to
# install the nightly toolchain or cargo-fuzz when missing).
set -euo pipefail
cd "$(dirname "$0")"
export CARGO_TERM_COLOR=never

SECS=${FUZZ_SECONDS:-5}
ALL=(registry_line http_parser peer_request jwt_decode config_parse)
TARGETS=("$@")
[ ${#TARGETS[@]} -gt 0 ] || TARGETS=("${ALL[@]}")

if ! cargo +nightly --version >/dev/null 2>&1; then
    echo "== installing the nightly toolchain (cargo fuzz needs it)"
    rustup toolchain install nightly --profile minimal
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "== installing cargo-fuzz"
    cargo install cargo-fuzz --locked
fi

echo "== fuzz build (nightly, ASan, debug assertions)"
cargo +nightly fuzz build --debug-assertions

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
declare -A EXECS
failed=()
for t in "${TARGETS[@]}"; do
    echo "== fuzz $t for ${SECS}s"
    # New inputs go to a scratch corpus; seeds and regressions are read only.
    mkdir -p "$work/$t"
    dirs=("$work/$t" "corpus/$t")
    [ -d "regressions/$t" ] && dirs+=("regressions/$t")
    # peer_request: past the 4096-byte line cap (libFuzzer's default stops at 4096).
    extra=()
    [ "$t" = peer_request ] && extra=(-max_len=8300)
    set +e
    cargo +nightly fuzz run --debug-assertions "$t" "${dirs[@]}" -- \
        -max_total_time="$SECS" -rss_limit_mb=2048 -timeout=25 \
        -print_final_stats=1 "${extra[@]}" </dev/null >"$work/$t.log" 2>&1
    rc=$?
    set -e
    n=$(sed -n 's/^stat::number_of_executed_units: *//p' "$work/$t.log" | tail -1)
    EXECS[$t]=${n:-?}
    if [ $rc -ne 0 ]; then
        failed+=("$t")
        echo "!! $t failed (exit $rc):"
        tail -40 "$work/$t.log"
    fi
done

echo "== fuzz executions (${SECS}s per target)"
for t in "${TARGETS[@]}"; do
    printf '%-15s %s\n' "$t" "${EXECS[$t]}"
done
if [ ${#failed[@]} -gt 0 ]; then
    echo "FAILED: ${failed[*]} (inputs in fuzz/artifacts/<target>/)"
    exit 1
fi
echo "fuzz smoke: no crash"
