#!/usr/bin/env bash
# Services in the lab against direct pod-IP traffic of the same shape, side by side in one run:
# new-connection rate (wrk, `Connection: close`) and request rate (wrk, keep-alive) to one whoami
# backend on k8s-w1, each path as a ratio to its direct twin:
#
#   clusterip-pod   curl-pod (k8s-ctr) → ClusterIP          per-packet LB in from_container
#   direct-pod      curl-pod (k8s-ctr) → the pod's IP
#   clusterip-node  k8s-ctr's namespace → ClusterIP         socket-LB at connect()
#   direct-node     k8s-ctr's namespace → the pod's IP
#   lbip-router     router → LoadBalancer IP routed to k8s-ctr, DNAT + SNAT there (from_netdev)
#   direct-router   router → the pod's IP routed through k8s-ctr, plain forwarding
#
# The Service selects only the k8s-w1 pod, so both sides of a pair reach the same backend over
# the same hops. Rounds are interleaved and medians reported, since the machine is shared. Run
# as root from the repository root: scripts/bench/lab-services.sh [ROUNDS] [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/../.."
rounds=${1:-3}
secs=${2:-3}
command -v wrk >/dev/null || { echo "wrk is missing (apt-get install wrk)" >&2; exit 1; }
source scripts/bench/lib.sh
bench_lab svb examples/guide/webpod.yaml examples/guide/curl-pod.yaml examples/guide/lb-ippool.yaml
pod=$(pod_name k8s-w1)
pod_ip=$($cilia get pod "$pod" -o jsonpath='{.status.podIP}')
# whoami closes first, so the backend keeps TIME_WAIT sockets; when runs alternate between the pod
# IP and a VIP, the client's per-destination ISN/timestamps then fail the backend's PAWS check and
# SYNs wait a second. No TIME_WAIT in the backend pod, identically for every path.
$cilia exec "$pod" -- sysctl -qw net.ipv4.tcp_max_tw_buckets=0
$cilia label pod "$pod" bench=yes >/dev/null
cat <<EOF | $cilia apply -f - >/dev/null
apiVersion: v1
kind: Service
metadata:
  name: bench
spec:
  type: LoadBalancer
  selector: {app: webpod, bench: "yes"}
  ports:
  - port: 80
    targetPort: 80
EOF
for _ in $(seq 120); do
  lbip=$($cilia get svc bench -o jsonpath='{.status.loadBalancer.ingress[0].ip}')
  cip=$($cilia get svc bench -o jsonpath='{.spec.clusterIP}')
  [ -n "$lbip" ] && $cilia dbg k8s-ctr bpf lb list | grep -q "^$lbip:80/TCP (0).*count=1" && break
  sleep 0.5
done
$cilia dbg k8s-ctr bpf lb list | grep -q "^$lbip:80/TCP (0).*count=1" || { echo "service not programmed" >&2; exit 1; }
# Both router paths go through k8s-ctr: the LB IP as an L2 announcement would bring it, the pod's
# address by a host route.
$cilia lab exec router -- ip route replace "$lbip" via 192.168.10.100
$cilia lab exec router -- ip route replace "$pod_ip/32" via 192.168.10.100

# run PATH WRK-ARGS...: wrk from the path's client towards its target.
run() {
  local target
  case $1 in
    clusterip-*) target=$cip ;; lbip-*) target=$lbip ;; direct-*) target=$pod_ip ;;
  esac
  case $1 in
    *-pod) $cilia exec curl-pod -- wrk "${@:2}" "http://$target/" ;;
    *-node) $cilia lab exec k8s-ctr -- wrk "${@:2}" "http://$target/" ;;
    *-router) $cilia lab exec router -- wrk "${@:2}" "http://$target/" ;;
  esac
}
rate() { awk '/Requests\/sec/ {r=int($2)} END {print r+0}'; }
errors() { awk '/Socket errors|Non-2xx/ {print}'; }
declare -A conn req conn_pair req_pair
# Pair by pair, rounds interleaved within a pair. The router pair runs last: the SNAT entries it
# leaves on k8s-ctr use ports from the node's own ephemeral range (see docs/service-lb.md), which
# would take replies away from k8s-ctr's own connections to the same backend.
for pair in "clusterip-pod direct-pod" "clusterip-node direct-node" "lbip-router direct-router"; do
  for r in $(seq "$rounds"); do
    for p in $pair; do
      out=$(run "$p" -t1 -c32 -d"${secs}s" -H 'Connection: close' 2>&1) || echo "round $r $p (new connections): $out" >&2
      conn[$p]+="$(echo "$out" | rate) "
      e=$(echo "$out" | errors); [ -z "$e" ] || echo "round $r $p (new connections): $e" >&2
      out=$(run "$p" -t1 -c32 -d"${secs}s" 2>&1) || echo "round $r $p (keep-alive): $out" >&2
      req[$p]+="$(echo "$out" | rate) "
      e=$(echo "$out" | errors); [ -z "$e" ] || echo "round $r $p (keep-alive): $e" >&2
    done
    # This round's ratio of the service path to its direct twin, measured seconds apart.
    set -- $pair
    c1=$(echo "${conn[$1]}" | awk '{print $NF}'); c2=$(echo "${conn[$2]}" | awk '{print $NF}')
    q1=$(echo "${req[$1]}" | awk '{print $NF}'); q2=$(echo "${req[$2]}" | awk '{print $NF}')
    conn_pair[$1]+="$(awk "BEGIN {print ($c2 > 0) ? $c1/$c2 : 0}") "
    req_pair[$1]+="$(awk "BEGIN {print ($q2 > 0) ? $q1/$q2 : 0}") "
  done
done
printf '%-16s %14s %8s %14s %8s\n' path "new conn/s" ratio "requests/s" ratio
for pair in "clusterip-pod direct-pod" "clusterip-node direct-node" "lbip-router direct-router"; do
  set -- $pair
  for p in "$1" "$2"; do
    c=$(echo "${conn[$p]}" | median); q=$(echo "${req[$p]}" | median)
    cb=$(echo "${conn[$2]}" | median); qb=$(echo "${req[$2]}" | median)
    printf '%-16s %14s %8s %14s %8s\n' "$p" "$c" "$(awk "BEGIN {printf \"%.2f\", $c/$cb}")" \
      "$q" "$(awk "BEGIN {printf \"%.2f\", $q/$qb}")"
  done
done
for pair in "clusterip-pod direct-pod" "clusterip-node direct-node" "lbip-router direct-router"; do
  set -- $pair
  printf '%-16s %14s %8s %14s %8s\n' "$1 (paired)" "" "$(echo "${conn_pair[$1]}" | median | awk '{printf "%.2f", $1}')" \
    "" "$(echo "${req_pair[$1]}" | median | awk '{printf "%.2f", $1}')"
done
echo "($rounds rounds of ${secs}s each, medians; paired: the median of each round's ratio to its direct twin;"
echo " wrk -t1 -c32; backend: $pod on k8s-w1)"
