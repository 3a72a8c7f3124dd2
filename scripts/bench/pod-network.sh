#!/usr/bin/env bash
# Pod-to-pod TCP throughput (iperf3, one stream) and HTTP request rate/latency (wrk against the
# whoami server, keep-alive) through cilia's pod networking, same-node and cross-node, each as a
# ratio to a plain veth + static-route baseline of the same shape built beside it in the same lab:
#
#   baseline:  client ns ─veth─ node1 ns ─veth─ server ns                       (same node)
#              client ns ─veth─ node1 ns ─veth─ bridge ─veth─ node2 ns ─veth─ server ns  (cross node)
#   cilia:     curl-pod ─lxc─ k8s-ctr ─lxc─ webpod          /   curl-pod ─ k8s-ctr ─ seg10 ─ k8s-w1 ─ webpod
#
# Runs are interleaved (baseline, cilia, baseline, ...) and medians reported, since the machine is
# shared. Run as root from the repository root: scripts/bench/pod-network.sh [ROUNDS] [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/../.."
rounds=${1:-3}
secs=${2:-3}
source scripts/bench/lib.sh
bench_lab pnb examples/guide/webpod.yaml examples/guide/curl-pod.yaml
same_ip=$(pod_ip k8s-ctr); cross_ip=$(pod_ip k8s-w1)
for node in k8s-ctr k8s-w1; do $cilia exec "$(pod_name $node)" -- iperf3 -s -D >/dev/null; done

# The baseline, inside namespaces named after the lab so `lab down` removes them too.
b="$lab-base"
for ns in c n1 n2 br s1 s2; do ip netns add "$b-$ns"; done
ipn() { ip -n "$b-$1" "${@:2}"; }
link() { # link NS1 IF1 NS2 IF2
  ip link add "$2" netns "$b-$1" type veth peer name "$4" netns "$b-$3"
  ipn "$1" link set "$2" up; ipn "$3" link set "$4" up
}
for ns in c n1 n2 br s1 s2; do ipn $ns link set lo up; done
link c eth0 n1 lxc-c; link s1 eth0 n1 lxc-s1; link s2 eth0 n2 lxc-s2
link n1 eth1 br p1; link n2 eth1 br p2
ipn br link add br0 type bridge; ipn br link set br0 up
ipn br link set p1 master br0; ipn br link set p2 master br0
ipn c addr add 10.98.1.10/24 dev eth0; ipn c route add default via 10.98.1.1
ipn n1 addr add 10.98.1.1/24 dev lxc-c
ipn s1 addr add 10.98.2.10/24 dev eth0; ipn s1 route add default via 10.98.2.1
ipn n1 addr add 10.98.2.1/24 dev lxc-s1
ipn s2 addr add 10.98.3.10/24 dev eth0; ipn s2 route add default via 10.98.3.1
ipn n2 addr add 10.98.3.1/24 dev lxc-s2
ipn n1 addr add 10.99.0.1/24 dev eth1; ipn n2 addr add 10.99.0.2/24 dev eth1
ipn n1 route add 10.98.3.0/24 via 10.99.0.2; ipn n2 route add 10.98.1.0/24 via 10.99.0.1
for ns in n1 n2; do ip netns exec "$b-$ns" sysctl -qw net.ipv4.ip_forward=1; done
for ns in s1 s2; do
  ip netns exec "$b-$ns" iperf3 -s -D >/dev/null
  ip netns exec "$b-$ns" setsid "$cilia" lab whoami --name "base-$ns" --port 80 >/dev/null 2>&1 < /dev/null &
  disown
done
sleep 0.5

# run_in PATH CMD...: the client side of a path.
run_in() {
  case $1 in
    base-*) ip netns exec "$b-c" "${@:2}" ;;
    cilia-*) $cilia exec curl-pod -- "${@:2}" ;;
  esac
}
target() {
  case $1 in
    base-same) echo 10.98.2.10 ;; base-cross) echo 10.98.3.10 ;;
    cilia-same) echo "$same_ip" ;; cilia-cross) echo "$cross_ip" ;;
  esac
}
declare -A gbps rps lat
for r in $(seq "$rounds"); do
  for path in base-same cilia-same base-cross cilia-cross; do
    ip=$(target $path)
    g=$(run_in $path iperf3 -c "$ip" -t "$secs" -J | python3 -c 'import json,sys; print("%.2f" % (json.load(sys.stdin)["end"]["sum_received"]["bits_per_second"]/1e9))')
    w=$(run_in $path wrk -t1 -c16 -d"${secs}s" "http://$ip/")
    q=$(echo "$w" | awk '/Requests\/sec/ {print $2}')
    l=$(echo "$w" | awk '/Latency/ {print $2}')
    gbps[$path]+="$g "; rps[$path]+="$q "; lat[$path]+="$l "
    echo "round $r $path: $g Gbit/s, $q req/s, latency $l" >&2
  done
done
to_us() { python3 -c 'import re,sys; v=sys.argv[1]; n=float(re.match(r"[0-9.]+",v).group()); u=v[len(re.match(r"[0-9.]+",v).group()):]; print(n*{"us":1,"ms":1000,"s":1e6}[u])' "$1"; }
echo
printf "%-12s %14s %12s %14s %12s %16s %12s\n" path "throughput" ratio "requests/s" ratio "mean latency" ratio
for kind in same cross; do
  bg=$(echo ${gbps[base-$kind]} | median); cg=$(echo ${gbps[cilia-$kind]} | median)
  bq=$(echo ${rps[base-$kind]} | median); cq=$(echo ${rps[cilia-$kind]} | median)
  bl=$(for v in ${lat[base-$kind]}; do to_us "$v"; done | tr '\n' ' ' | median)
  cl=$(for v in ${lat[cilia-$kind]}; do to_us "$v"; done | tr '\n' ' ' | median)
  printf "%-12s %10s Gb/s %12s %14s %12s %13s us %12s\n" "base-$kind" "$bg" "" "$bq" "" "$bl" ""
  printf "%-12s %10s Gb/s %11.2fx %14s %11.2fx %13s us %11.2fx\n" "cilia-$kind" "$cg" "$(echo "$cg/$bg" | bc -l)" "$cq" "$(echo "$cq/$bq" | bc -l)" "$cl" "$(echo "$bl/$cl" | bc -l)"
done
echo "(latency ratio is baseline/cilia: above 1 means cilia is faster)"
