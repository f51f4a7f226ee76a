#!/usr/bin/env bash
# Runs one registry benchmark against a fresh release coordinator (fresh data
# directory), the way every registry figure in BENCHMARKS.md was produced.
#   tools/scripts/bench-registry.sh NAME TOOL [tool args...]
#   e.g. tools/scripts/bench-registry.sh preset-10k-paced registry-bench --preset 10k
# COORD_BIN=path runs another coordinator build (an A/B against an older commit)
# with this tree's tool.
# Writes bench-results/NAME.txt (stdout), NAME.stderr (progress) and NAME.json.
set -euo pipefail
cd "$(dirname "$0")/../.."
name=$1; tool=$2; shift 2
bin=target/release
out=bench-results
mkdir -p "$out"
coord=${COORD_BIN:-$bin/p2pshare}
[ -x "$coord" ] && [ -x "$bin/$tool" ] || cargo build --release --workspace
dir=$(mktemp -d /tmp/p2pshare-bench-XXXXXX)
JWT_SECRET_KEY=benchsecret ADMIN_PASSWORD=adminpass123 P2PSHARE_LOG=warn \
  "$coord" coordinator --data-dir "$dir/data" --registry-port 0 --admin-api-port 0 \
  --host 127.0.0.1 > "$dir/log" 2>&1 &
cpid=$!
trap 'kill $cpid 2>/dev/null; rm -rf "$dir"' EXIT
for _ in $(seq 1 300); do
  grep -q "registry listening on" "$dir/log" && break
  sleep 0.1
done
addr=$(sed -n 's/^registry listening on //p' "$dir/log" | head -1)
[ -n "$addr" ] || { echo "the coordinator did not start:"; cat "$dir/log"; exit 1; }
api=$(sed -n 's/^admin api listening on //p' "$dir/log" | head -1)
# registry-bench also reports the coordinator's own figures from its /api/stats.
extra=()
[ "$tool" = registry-bench ] && [ -n "$api" ] && extra=(--stats-api "$api")
echo "$(date -u '+%F %T') load: $(cut -d' ' -f1-3 /proc/loadavg)  coordinator $coord"
echo "$(date -u '+%F %T') load: $(cut -d' ' -f1-3 /proc/loadavg)  $bin/$tool --coordinator $addr --jwt-secret benchsecret --coordinator-pid $cpid --json $out/$name.json ${extra[*]} $*"
"$bin/$tool" --coordinator "$addr" --jwt-secret benchsecret --coordinator-pid "$cpid" \
  --json "$out/$name.json" "${extra[@]}" "$@" > "$out/$name.txt" 2> "$out/$name.stderr"
