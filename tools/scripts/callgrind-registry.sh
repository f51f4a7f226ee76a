#!/usr/bin/env bash
# Counts the coordinator's instructions for one registry-bench run: the
# coordinator runs under valgrind --tool=callgrind (load-independent: the
# count does not change when other work shares the machine), the tool drives
# it as bench-registry.sh does.
#   tools/scripts/callgrind-registry.sh NAME [registry-bench args...]
# COORD_BIN=path counts another build (an A/B with this tree's tool).
# Writes bench-results/NAME.callgrind (the profile) and NAME.txt.
set -euo pipefail
cd "$(dirname "$0")/../.."
name=$1; shift
bin=target/release
coord=${COORD_BIN:-$bin/p2pshare}
out=bench-results
mkdir -p "$out"
dir=$(mktemp -d /tmp/p2pshare-cg-XXXXXX)
# PBKDF2 of the admin password would otherwise dominate a short run.
JWT_SECRET_KEY=benchsecret ADMIN_PASSWORD=adminpass123 P2PSHARE_LOG=warn P2PSHARE_PBKDF2_ITERATIONS=1 \
  valgrind --tool=callgrind --callgrind-out-file="$out/$name.callgrind" \
  "$coord" coordinator --data-dir "$dir/data" --registry-port 0 --admin-api-port 0 \
  --host 127.0.0.1 > "$dir/log" 2>&1 &
cpid=$!
trap 'kill $cpid 2>/dev/null; rm -rf "$dir"' EXIT
for _ in $(seq 1 600); do
  grep -q "registry listening on" "$dir/log" && break
  sleep 0.1
done
addr=$(sed -n 's/^registry listening on //p' "$dir/log" | head -1)
[ -n "$addr" ] || { echo "the coordinator did not start:"; cat "$dir/log"; exit 1; }
echo "$(date -u '+%F %T') load: $(cut -d' ' -f1-3 /proc/loadavg)  callgrind $coord; registry-bench $*"
"$bin/registry-bench" --coordinator "$addr" --jwt-secret benchsecret "$@" > "$out/$name.txt" 2> "$out/$name.stderr"
kill -TERM $cpid
wait $cpid || true
trap 'rm -rf "$dir"' EXIT
grep -E "success_rate|answers" "$out/$name.txt" | head -2
callgrind_annotate "$out/$name.callgrind" 2>/dev/null | grep -m1 -E "PROGRAM TOTALS|Ir"
