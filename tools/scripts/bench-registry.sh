#!/usr/bin/env bash
# Runs one registry benchmark against a fresh release coordinator (fresh data
# directory), the way every registry figure in BENCHMARKS.md was produced.
#   tools/scripts/bench-registry.sh NAME TOOL [tool args...]
#   e.g. tools/scripts/bench-registry.sh preset-10k-paced registry-bench --preset 10k
# COORD_BIN=path runs another coordinator build (an A/B against an older commit)
# with this tree's tool.
# PERF=1 also samples the coordinator with `perf record --call-graph dwarf`
# for the whole run (bench-results/NAME.perf.data; read it with `perf report`).
# SCHED=1 records the scheduler machine-wide instead (NAME.sched.data): how long
# the coordinator's loop ran and waited for a CPU at each wake-up, e.g.
# `perf sched timehist -i bench-results/NAME.sched.data --pid PID` (PID in NAME.txt).
# PIN=1 runs the coordinator on the last CPU and the tool (its client
# processes inherit it) on the others (`taskset`), so neither waits for the
# other's CPU: the server's figures without the load generator's scheduling.
# Writes bench-results/NAME.txt (stdout), NAME.stderr (progress), NAME.json and
# NAME.coordinator.log (P2PSHARE_SLOW_TURN_MS=2 logs each loop turn over 2 ms there).
set -euo pipefail
cd "$(dirname "$0")/../.."
name=$1; tool=$2; shift 2
bin=target/release
out=bench-results
mkdir -p "$out"
coord=${COORD_BIN:-$bin/p2pshare}
[ -x "$coord" ] && [ -x "$bin/$tool" ] || cargo build --release --workspace
dir=$(mktemp -d /tmp/p2pshare-bench-XXXXXX)
coord_pin=(); tool_pin=()
if [ "${PIN:-}" = 1 ]; then
  last=$(($(nproc) - 1))
  [ "$last" -ge 1 ] || { echo "PIN=1 needs at least two CPUs"; exit 1; }
  coord_pin=(taskset -c "$last"); tool_pin=(taskset -c "0-$((last - 1))")
fi
JWT_SECRET_KEY=benchsecret ADMIN_PASSWORD=adminpass123 P2PSHARE_LOG=warn \
  "${coord_pin[@]}" "$coord" coordinator --data-dir "$dir/data" --registry-port 0 --admin-api-port 0 \
  --host 127.0.0.1 > "$dir/log" 2>&1 &
cpid=$!
perf_pid=
# On exit: stop the profiler first (if any), then the coordinator; keep its log.
# `|| true` throughout: under `set -e` a failing step would end the trap early
# and leave the coordinator running.
finish() {
  [ -z "$perf_pid" ] || { kill -TERM "$perf_pid" 2>/dev/null || true; wait "$perf_pid" 2>/dev/null || true; }
  kill "$cpid" 2>/dev/null || true
  cp "$dir/log" "$out/$name.coordinator.log" 2>/dev/null || true
  rm -rf "$dir"
}
trap finish EXIT
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
echo "$(date -u '+%F %T') load: $(cut -d' ' -f1-3 /proc/loadavg)  ${coord_pin[*]} coordinator $coord"
if [ "${PERF:-}" = 1 ]; then
  perf record -F 499 --call-graph dwarf,16384 -p "$cpid" -o "$out/$name.perf.data" \
    > "$out/$name.perf.log" 2>&1 &
  perf_pid=$!
elif [ "${SCHED:-}" = 1 ]; then
  perf sched record -a -o "$out/$name.sched.data" > "$out/$name.perf.log" 2>&1 &
  perf_pid=$!
fi
echo "$(date -u '+%F %T') load: $(cut -d' ' -f1-3 /proc/loadavg)  ${tool_pin[*]} $bin/$tool --coordinator $addr --jwt-secret benchsecret --coordinator-pid $cpid --json $out/$name.json ${extra[*]} $*"
"${tool_pin[@]}" "$bin/$tool" --coordinator "$addr" --jwt-secret benchsecret --coordinator-pid "$cpid" \
  --json "$out/$name.json" "${extra[@]}" "$@" > "$out/$name.txt" 2> "$out/$name.stderr"
