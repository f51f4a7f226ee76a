#!/usr/bin/env bash
# One long run of one target (README.md, "Long runs"): niced, from the seeds
# plus whatever corpus earlier runs grew in corpus/<target>/ (not committed).
#   fuzz/long-run.sh registry_line [seconds]
set -euo pipefail
cd "$(dirname "$0")"
t=$1
secs=${2:-600}
dirs=("corpus/$t")
[ -d "regressions/$t" ] && dirs+=("regressions/$t")
# peer_request: past the 4096-byte line cap (libFuzzer's default stops at 4096).
extra=()
[ "$t" = peer_request ] && extra=(-max_len=8300)
exec nice -n 19 cargo +nightly fuzz run --debug-assertions "$t" "${dirs[@]}" -- \
    -max_total_time="$secs" -rss_limit_mb=2048 -timeout=25 -print_final_stats=1 "${extra[@]}" </dev/null
