#!/usr/bin/env bash
# What conntrack garbage collection costs the rest of the node: CNI ADD latency (p50, p99) and
# cluster DNS latency (p50, p99) on k8s-ctr while its agent sweeps a full conntrack map, against the
# same node with an idle map, side by side in one run (rounds interleaved: idle, busy, fill-only).
#
#   busy       scripts/bench/ct_fill.py keeps k8s-ctr's conntrack map full (262144 entries
#              rewritten every second, half of them expired), and the agent sweeps every second
#              (conntrack-gc-interval=1s): each sweep walks the full map and deletes about half
#   idle       the filler stopped and its entries swept away; the agent still sweeps every second
#   fill-only  the filler running, the agent not sweeping (conntrack-gc-interval=1h): what the
#              filler's own writes cost, so that busy/fill-only is the sweep's share
#
#   CNI ADD    ADDS pods wired per phase by calling the CNI plugin against k8s-ctr's agent, each in
#              a fresh network namespace and deleted again; latency is the plugin's wall time, which
#              includes the datapath's attach of the pod's programs
#   DNS        dnsperf in curl-pod against the agent's cluster DNS at RATE q/s for SECS seconds,
#              latency from every response
#
# Prints the figures per phase (pooled over the rounds) and busy/idle ratios. Run as root from
# anywhere: scripts/bench/ct-gc.sh [ROUNDS]. ADDS (30), RATE (1000), SECS (5) tune it; SKIP_BUILD=1
# uses the last build, PROFILE=debug the debug build.
set -euo pipefail
cd "$(dirname "$0")/../.."
. scripts/bench/lib.sh
rounds=${1:-3}
adds=${ADDS:-30}
rate=${RATE:-1000}
secs=${SECS:-5}
node=k8s-ctr

bench_lab ctgc examples/guide/webpod.yaml examples/guide/curl-pod.yaml
work=$(mktemp -d)
chmod 755 "$work"
filler=
cleanup() {
  [ -z "$filler" ] || kill "$filler" 2>/dev/null || true
  rm -rf "$work"
  $cilia lab down >/dev/null 2>&1 || true
}
trap cleanup EXIT

# gc_every INTERVAL: restarts the agents with that sweep interval.
gc_every() {
  $cilia config set conntrack-gc-interval="$1" >/dev/null
  $cilia status --wait >/dev/null
  sleep 2
}
pins=/sys/fs/bpf/cilia/$lab/$node
ct_map=$pins/cilia_ct4_global
sock=/run/cilia/lab/$lab/nodes/$node/cni.sock
conf="{\"cniVersion\":\"1.0.0\",\"name\":\"cilia\",\"type\":\"cilia-cni\",\"agentSocket\":\"$sock\",\"mtu\":1500}"
gw=$($cilia exec curl-pod -- ip route show default | awk '{print $3; exit}')
echo "webpod.default.svc.cluster.local A" >"$work/names.txt"
# ct_entries: how many entries the conntrack map holds (walked key by key, like `bpftool map dump`).
ct_entries() { python3 - "$ct_map" <<'PY'
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True); libc.syscall.restype = ctypes.c_long
class Get(ctypes.Structure): _fields_ = [("p", ctypes.c_uint64), ("fd", ctypes.c_uint32), ("f", ctypes.c_uint32)]
class Next(ctypes.Structure): _fields_ = [("fd", ctypes.c_uint32), ("pad", ctypes.c_uint32), ("key", ctypes.c_uint64), ("next", ctypes.c_uint64)]
path = ctypes.create_string_buffer(sys.argv[1].encode())
fd = libc.syscall(321, 7, ctypes.byref(Get(ctypes.addressof(path), 0, 0)), 16)
a, b = ctypes.create_string_buffer(16), ctypes.create_string_buffer(16)
n, key = 0, 0
while libc.syscall(321, 4, ctypes.byref(Next(fd, 0, key, ctypes.addressof(b))), 24) == 0:
    n += 1; ctypes.memmove(a, b, 16); key = ctypes.addressof(a)
print(n)
PY
}

# cni_adds PHASE ROUND: wires ADDS pods one after the other, printing each ADD's microseconds.
cni_adds() {
  for i in $(seq "$adds"); do
    local ns=$lab-cnib-$i id=cnib-$1-$2-$i
    ip netns add "$ns"
    local t0 t1
    t0=$(date +%s%N)
    CNI_COMMAND=ADD CNI_CONTAINERID=$id CNI_NETNS=/var/run/netns/$ns CNI_IFNAME=eth0 CNI_PATH=/opt/cni/bin \
      CNI_ARGS="IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=$id" "$bin/cilia-cni" <<<"$conf" >/dev/null
    t1=$(date +%s%N)
    echo $(((t1 - t0) / 1000))
    CNI_COMMAND=DEL CNI_CONTAINERID=$id CNI_NETNS=/var/run/netns/$ns CNI_IFNAME=eth0 CNI_PATH=/opt/cni/bin \
      "$bin/cilia-cni" <<<"$conf" >/dev/null
    ip netns del "$ns"
  done
}
# dns_latencies: every response's microseconds.
dns_latencies() {
  $cilia exec curl-pod -- dnsperf -s "$gw" -p 53 -d "$work/names.txt" -l "$secs" -Q "$rate" -v 2>&1 |
    awk '/^> / {printf "%d\n", $NF * 1000000}'
}
# pct P: the P-th percentile of numbers on stdin.
pct() { sort -g | awk -v p="$1" '{a[NR]=$1} END {if (NR == 0) {print "-"; exit}; i=int(NR*p); if (i<1) i=1; print a[i]}'; }
ratio() { echo "scale=2; $1 / $2" | bc; }

echo "conntrack GC vs idle map, lab $CILIA_LAB, node $node: $rounds rounds, $adds CNI ADDs and ${secs}s of DNS at $rate q/s per phase"
for f in add-idle add-busy add-fill dns-idle dns-busy dns-fill; do : >"$work/$f"; done
for r in $(seq "$rounds"); do
  gc_every 1s
  # Idle: wait until the filler's entries are gone (they live 3 s, then a sweep takes them).
  for _ in $(seq 60); do
    [ "$(ct_entries)" -lt 1000 ] && break
    sleep 0.5
  done
  idle_entries=$(ct_entries)
  cni_adds idle "$r" >>"$work/add-idle"
  dns_latencies >>"$work/dns-idle"
  python3 scripts/bench/ct_fill.py "$ct_map" 262144 1 3 &
  filler=$!
  sleep 2
  busy_entries=$(ct_entries)
  cni_adds busy "$r" >>"$work/add-busy"
  dns_latencies >>"$work/dns-busy"
  # Fill-only: the same writes, no sweeps.
  gc_every 1h
  fill_entries=$(ct_entries)
  cni_adds fill "$r" >>"$work/add-fill"
  dns_latencies >>"$work/dns-fill"
  kill "$filler"; wait "$filler" 2>/dev/null || true; filler=
  echo "  round $r: conntrack entries idle $idle_entries, busy $busy_entries, fill-only $fill_entries"
done

# row LABEL FILE-STEM P: the P-th percentile of each phase and the ratios.
row() {
  local i b f
  i=$(pct "$3" <"$work/$2-idle"); b=$(pct "$3" <"$work/$2-busy"); f=$(pct "$3" <"$work/$2-fill")
  printf '%-26s %10s %12s %10s %10s %15s\n' "$1" "$i" "$b" "$f" "$(ratio "$b" "$i")" "$(ratio "$b" "$f")"
}
echo
printf '%-26s %10s %12s %10s %10s %15s\n' "" "idle map" "GC sweeping" "fill-only" "busy/idle" "busy/fill-only"
row "CNI ADD p50, us" add 0.5
row "CNI ADD p99, us" add 0.99
row "DNS p50 at $rate q/s, us" dns 0.5
row "DNS p99 at $rate q/s, us" dns 0.99
echo "samples per phase: $(wc -l <"$work/add-idle") ADDs, $(wc -l <"$work/dns-idle") / $(wc -l <"$work/dns-busy") / $(wc -l <"$work/dns-fill") DNS responses"
