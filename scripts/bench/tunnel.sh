#!/usr/bin/env bash
# Tunnel mode against native routing between the same two same-segment nodes (curl-pod on k8s-ctr
# → webpod on k8s-w1): pod-to-pod TCP throughput (iperf3, one stream) and HTTP request rate (wrk
# against the whoami server, keep-alive, 16 connections), as tunnel/native ratios; and the
# mode-switch convergence time (`cilia config set` → every webpod the mode reaches answers
# curl-pod's ping again; the first native round starts from native and measures no switch).
#
# One lab; rounds alternate native and tunnel (switching with `cilia config set`, each switch
# timed), medians reported, since the machine is shared. Besides the ratio of the two medians, the
# median of each round's own tunnel/native ratio is printed: a round's two measurements are taken
# seconds apart, so a change of the machine's load during the run moves both. Run as root from
# the repository root:
#   scripts/bench/tunnel.sh [ROUNDS] [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/../.."
rounds=${1:-3}
secs=${2:-3}
source scripts/bench/lib.sh
bench_lab tnb examples/guide/webpod.yaml examples/guide/curl-pod.yaml
w1=$(pod_ip k8s-w1)
# The server lives in the pod's namespace, which `lab down` empties.
$cilia exec "$(pod_name k8s-w1)" -- iperf3 -s -D >/dev/null

# switch MODE: config set and wait until every webpod the mode can reach answers (native routing
# cannot reach k8s-w0 across the router: the guide's failure); prints the seconds it took.
switch() {
  local args nodes
  case $1 in
    native) args="routing-mode=native auto-direct-node-routes=true"; nodes="k8s-ctr k8s-w1" ;;
    tunnel) args="routing-mode=tunnel tunnel-protocol=vxlan auto-direct-node-routes=false"; nodes="k8s-ctr k8s-w1 k8s-w0" ;;
  esac
  local t0 t1
  t0=$(date +%s.%N)
  # shellcheck disable=SC2086
  $cilia config set $args >/dev/null
  for _ in $(seq 300); do
    ok=1
    for node in $nodes; do
      $cilia exec curl-pod -- ping -c 1 -W 1 "$(pod_ip $node)" >/dev/null 2>&1 || { ok=0; break; }
    done
    [ $ok = 1 ] && break
    sleep 0.1
  done
  [ $ok = 1 ] || { echo "not converged after switching to $1" >&2; exit 1; }
  t1=$(date +%s.%N)
  echo "$t1 - $t0" | bc -l
}

declare -A gbps rps conv
pg=""; pq=""
for r in $(seq "$rounds"); do
  for mode in native tunnel; do
    c=$(switch $mode)
    conv[$mode]+="$c "
    g=$($cilia exec curl-pod -- iperf3 -c "$w1" -t "$secs" -J | python3 -c 'import json,sys; print("%.2f" % (json.load(sys.stdin)["end"]["sum_received"]["bits_per_second"]/1e9))')
    q=$($cilia exec curl-pod -- wrk -t1 -c16 -d"${secs}s" "http://$w1/" | awk '/Requests\/sec/ {print $2}')
    gbps[$mode]+="$g "; rps[$mode]+="$q "
    printf "round %s %-6s: %s Gbit/s, %s req/s, switch converged in %.2f s\n" "$r" "$mode" "$g" "$q" "$c" >&2
    if [ "$mode" = native ]; then ng_r=$g; nq_r=$q; fi
  done
  pg+="$(echo "$g/$ng_r" | bc -l) "; pq+="$(echo "$q/$nq_r" | bc -l) "
done
echo
printf "%-8s %14s %8s %14s %8s %22s\n" mode throughput ratio "requests/s" ratio "switch to it (median)"
ng=$(echo ${gbps[native]} | median); nq=$(echo ${rps[native]} | median)
for mode in native tunnel; do
  g=$(echo ${gbps[$mode]} | median); q=$(echo ${rps[$mode]} | median); c=$(echo ${conv[$mode]} | median)
  printf "%-8s %9s Gb/s %7.2fx %14s %7.2fx %20.2f s\n" "$mode" "$g" "$(echo "$g/$ng" | bc -l)" "$q" "$(echo "$q/$nq" | bc -l)" "$c"
done
printf "%-8s %9s      %7.2fx %14s %7.2fx\n" "paired" "" "$(echo $pg | median)" "" "$(echo $pq | median)"
echo "(k8s-ctr → k8s-w1, same segment; a switch includes the rollout restart of the operator and three agents;"
echo " paired: the median of each round's tunnel/native ratio)"
