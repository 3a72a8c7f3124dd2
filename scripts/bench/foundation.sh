#!/usr/bin/env bash
# Foundation figures: `lab up` / `lab down` wall time, `cilia get` latency (the whole command: start,
# connect over the unix socket, read, print), and the datastore's own get and watch-event latency
# (store-bench, in-process against a throwaway etcd). Run as root from the repository root.
set -euo pipefail
cd "$(dirname "$0")/../.."
cargo build --release --bins -q
cargo build --release -q -p store --example store-bench
cilia=target/release/cilia
lab=bench$$
export CILIA_LAB=$lab
trap '$cilia lab down >/dev/null 2>&1 || true' EXIT

ms() { echo $(( ($2 - $1) / 1000000 )); }
pct() { sort -n | awk -v p="$1" '{a[NR]=$1} END {i=int(NR*p/100); if (i<1) i=1; if (i>NR) i=NR; print a[i]}'; }

echo "lab up / lab down (lab $lab), 3 rounds:"
for round in 1 2 3; do
  t0=$(date +%s%N); $cilia lab up >/dev/null 2>&1; t1=$(date +%s%N)
  $cilia lab up >/dev/null 2>&1; t2=$(date +%s%N)
  $cilia lab down >/dev/null 2>&1; t3=$(date +%s%N)
  echo "  round $round: up $(ms "$t0" "$t1") ms, up again (no change) $(ms "$t1" "$t2") ms, down $(ms "$t2" "$t3") ms"
done

$cilia lab up >/dev/null 2>&1
samples=$(mktemp)
for _ in $(seq 100); do
  t0=$(date +%s%N); $cilia get nodes >/dev/null; t1=$(date +%s%N)
  echo $(( (t1 - t0) / 1000 )) >>"$samples"
done
echo "cilia get nodes (whole command, 100 runs): p50 $(pct 50 <"$samples") us, p99 $(pct 99 <"$samples") us"
rm -f "$samples"
$cilia lab down >/dev/null 2>&1

echo "datastore (in-process, etcd on a unix socket):"
target/release/examples/store-bench
