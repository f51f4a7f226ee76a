#!/usr/bin/env bash
# Every benchmark of BENCHMARKS.md, in the order the tables list them.
# Takes about ten minutes on an idle 2-core machine; results in bench-results/.
set -euo pipefail
cd "$(dirname "$0")/../.."
cargo build --release --workspace
run=tools/scripts/bench-registry.sh
$run preset-1k-paced   registry-bench --preset 1k
$run preset-1k-burst   registry-bench --preset 1k --burst
$run preset-10k-paced  registry-bench --preset 10k
$run preset-10k-burst  registry-bench --preset 10k --burst
$run preset-100k-paced registry-bench --preset 100k
$run hold-closed       registry-bench --hold 10000 --duration 10 --reference-echo
$run hold-open-50k     registry-bench --hold 10000 --duration 10 --rate 50000
$run hold-pipelined-16 registry-bench --hold 10000 --duration 10 --pipeline 16 --reference-echo
$run heartbeat         heartbeat-sim
target/release/transfer-bench --bin target/release/p2pshare --reference nginx \
  --json bench-results/transfer.json > bench-results/transfer.txt
cargo bench --bench hot_paths > bench-results/hot_paths.txt
