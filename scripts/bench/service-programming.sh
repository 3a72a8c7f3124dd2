#!/usr/bin/env bash
# Service programming latency in a lab of its own: EndpointSlice change → k8s-ctr's BPF maps
# (p50/p99), and a burst of 10 000 new Services until all are programmed. Run as root.
set -euo pipefail
cd "$(dirname "$0")/../.."
cargo build --release --bins -q
cargo build --release -q -p agent --example programming-latency
export CILIA_LAB=spb$$
trap 'target/release/cilia lab down >/dev/null 2>&1 || true' EXIT
target/release/cilia lab up >/dev/null 2>&1
# `lab up` returns once the processes run; the agent pins its maps a moment later.
pins=/sys/fs/bpf/cilia/$CILIA_LAB/k8s-ctr
for _ in $(seq 100); do [ -e "$pins/cilia_lb4_services" ] && break; sleep 0.2; done
[ -e "$pins/cilia_lb4_services" ] || { echo "k8s-ctr's agent pinned no service maps in $pins" >&2; exit 1; }
target/release/examples/programming-latency "unix:///run/cilia/lab/$CILIA_LAB/etcd.sock" \
  "$pins" "${1:-200}" "${2:-10000}"
