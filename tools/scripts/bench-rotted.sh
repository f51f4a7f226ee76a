#!/usr/bin/env bash
# Issue 11's rotted-copy figure: three nodes, each limited to RATE, share the
# same SIZE file; a fourth fetches it with `p2pshare get` (every host at
# once), once with three good copies and once with one copy rotted on disk
# (bytes in the middle overwritten, size and modification time restored, so
# its node cannot notice). Prints both times and their ratio.
# Usage: tools/scripts/bench-rotted.sh [BIN] [SIZE_MB] [RATE]
set -euo pipefail
BIN=${1:-target/release/p2pshare}
SIZE_MB=${2:-300}
RATE=${3:-20MB}
W=$(mktemp -d /dev/shm/rotted.XXXXXX)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$W"' EXIT
export P2PSHARE_PBKDF2_ITERATIONS=1000
started() { until grep -qs "$2" "$1"; do sleep 0.1; done; grep -o "$2[^ ]*" "$1" | head -1 | sed "s|$2||"; }
"$BIN" coordinator --data-dir "$W/coord" --host 127.0.0.1 --registry-port 0 --admin-api-port 0 > "$W/coord.log" 2>&1 &
REG=$(started "$W/coord.log" "registry listening on ")
API=$(started "$W/coord.log" "admin api listening on ")
node() { # name, extra flags
  "$BIN" node --data-dir "$W/$1" --client-api-port 0 --coordinator "$REG" --coordinator-api "$API" \
    --port-range 0-0 --share-root "$W" --advertise-ip 127.0.0.1 "${@:2}" > "$W/$1.log" 2>&1 &
  started "$W/$1.log" "client api listening on "
}
as() { # name, command...
  local n=$1; shift
  XDG_CONFIG_HOME="$W/cfg-$n" P2PSHARE_NODE="${ADDR[$n]}" P2PSHARE_PASSWORD="pw-$n-12345" "$BIN" "$@"
}
declare -A ADDR
for n in a b c; do ADDR[$n]=$(node $n --max-upload-rate "$RATE"); done
ADDR[d]=$(node d)
head -c $((SIZE_MB << 20)) /dev/urandom > "$W/src.bin"
for n in a b c; do
  mkdir -p "$W/share-$n" && cp "$W/src.bin" "$W/share-$n/big.bin"
  as $n login "user-$n" --register > /dev/null
  as $n share --force "$W/share-$n/big.bin" > /dev/null
done
as d login user-d --register > /dev/null
fetch() { # label
  mkdir -p "$W/out-$1"
  local t0 t1
  t0=$(date +%s.%N)
  as d get big.bin --to "$W/out-$1" --no-share > "$W/get-$1.log" 2>&1
  t1=$(date +%s.%N)
  cmp -s "$W/src.bin" "$W/out-$1/big.bin" || { echo "bytes differ ($1)"; exit 1; }
  echo "$t1 - $t0" | bc
}
clean=$(fetch clean)
# Rot c's copy: 4 MiB in the middle, size and mtime as they were.
f="$W/share-c/big.bin"; touch -r "$f" "$W/stamp"
dd if=/dev/urandom of="$f" bs=1M seek=$((SIZE_MB / 2)) count=4 conv=notrunc status=none
touch -r "$W/stamp" "$f"
rotted=$(fetch rotted)
echo "size ${SIZE_MB} MiB, 3 hosts at $RATE each"
echo "clean  ${clean} s"
echo "rotted ${rotted} s   ratio $(echo "scale=2; $rotted / $clean" | bc)"
grep -o "dropped[^)]*)" "$W/get-rotted.log" | head -2 || true
