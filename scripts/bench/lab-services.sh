#!/usr/bin/env bash
# Services in the lab against direct pod-IP traffic of the same shape, side by side in one run:
# new-connection rate (wrk, `Connection: close`) and request rate (wrk, keep-alive) to one whoami
# backend on k8s-w1, each path as a ratio to its direct twin:
#
#   clusterip-pod   curl-pod (k8s-ctr) → ClusterIP          per-packet LB in from_container
#   direct-pod      curl-pod (k8s-ctr) → the pod's IP
#   clusterip-node  k8s-ctr's namespace → ClusterIP         socket-LB at connect()
#   direct-node     k8s-ctr's namespace → the pod's IP
#   lbip-local      router → LoadBalancer IP routed to k8s-ctr, backend on k8s-ctr (DNAT only)
#   direct-local    router → that pod's IP routed through k8s-ctr
#   lbip-router     router → LoadBalancer IP routed to k8s-ctr, backend on k8s-w1: DNAT + SNAT
#                   there (from_netdev), so replies come back through k8s-ctr
#   direct-router   router → the k8s-w1 pod's IP routed through k8s-ctr, plain forwarding; its
#                   replies go from k8s-w1 straight to the router, one hop fewer than SNAT's
#   direct-masq     the same with the kernel masquerading the router on k8s-ctr (nftables), so
#                   that replies take SNAT's way back: the same hops, NAT by the kernel
#
# Each Service selects one pod, so the paths of a group reach the same backend. Rounds are
# interleaved and medians reported, since the machine is shared. Run as root from the repository
# root: scripts/bench/lab-services.sh [ROUNDS] [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/../.."
rounds=${1:-3}
secs=${2:-3}
command -v wrk >/dev/null || { echo "wrk is missing (apt-get install wrk)" >&2; exit 1; }
source scripts/bench/lib.sh
bench_lab svb examples/guide/webpod.yaml examples/guide/curl-pod.yaml examples/guide/lb-ippool.yaml
pod=$(pod_name k8s-w1)
pod_ip=$($cilia get pod "$pod" -o jsonpath='{.status.podIP}')
local_pod=$(pod_name k8s-ctr)
local_ip=$($cilia get pod "$local_pod" -o jsonpath='{.status.podIP}')
# whoami closes first, so the backend keeps TIME_WAIT sockets; when runs alternate between the pod
# IP and a VIP, the client's per-destination ISN/timestamps then fail the backend's PAWS check and
# SYNs wait a second. No TIME_WAIT in the backend pods, identically for every path.
for p in "$pod" "$local_pod"; do $cilia exec "$p" -- sysctl -qw net.ipv4.tcp_max_tw_buckets=0; done
$cilia label pod "$pod" bench=remote >/dev/null
$cilia label pod "$local_pod" bench=local >/dev/null
for svc in remote local; do
  cat <<EOF | $cilia apply -f - >/dev/null
apiVersion: v1
kind: Service
metadata:
  name: bench-$svc
spec:
  type: LoadBalancer
  selector: {app: webpod, bench: "$svc"}
  ports:
  - port: 80
    targetPort: 80
EOF
done
# lb_ip SERVICE: its LoadBalancer IP, once k8s-ctr forwards it to its one backend.
lb_ip() {
  local ip
  for _ in $(seq 120); do
    ip=$($cilia get svc "$1" -o jsonpath='{.status.loadBalancer.ingress[0].ip}')
    [ -n "$ip" ] && $cilia dbg k8s-ctr bpf lb list | grep -q "^$ip:80/TCP (0).*count=1" && { echo "$ip"; return; }
    sleep 0.5
  done
  echo "service $1 not programmed" >&2
  return 1
}
lbip=$(lb_ip bench-remote)
lbip_local=$(lb_ip bench-local)
# The operator allocates cluster IPs on its own, not with the LB IP seen above.
for _ in $(seq 120); do
  cip=$($cilia get svc bench-remote -o jsonpath='{.spec.clusterIP}')
  [ -n "$cip" ] && $cilia dbg k8s-ctr bpf lb list | grep -q "^$cip:80/TCP (0).*count=1" && break
  sleep 0.5
done
[ -n "$cip" ] || { echo "bench-remote got no cluster IP" >&2; exit 1; }
# Every router path goes through k8s-ctr: the LB IPs because k8s-ctr announces them (L2
# announcements, no route on the router), the pods' addresses by host routes for the direct paths.
$cilia config set --set l2announcements.enabled=true >/dev/null
$cilia apply -f - >/dev/null <<POLICY
apiVersion: cilium.io/v2alpha1
kind: CiliumL2AnnouncementPolicy
metadata: {name: bench-from-k8s-ctr}
spec:
  serviceSelector:
    matchExpressions: [{key: io.kubernetes.service.name, operator: In, values: [bench-remote, bench-local]}]
  nodeSelector: {matchLabels: {kubernetes.io/hostname: k8s-ctr}}
  interfaces: ["^eth1$"]
  loadBalancerIPs: true
POLICY
ctr_mac=$($cilia lab exec k8s-ctr -- ip -br link show eth1 | awk '{print tolower($3)}')
for ip in "$lbip" "$lbip_local"; do
  for _ in $(seq 120); do
    $cilia lab exec router -- arping -I eth1 -c 1 -w 1 "$ip" | grep -qi "from $ctr_mac" && break
    sleep 0.5
  done
done
for dst in "$pod_ip/32" "$local_ip/32"; do
  $cilia lab exec router -- ip route replace "$dst" via 192.168.10.100
done
# direct-masq's masquerading, in k8s-ctr's namespace only while that path runs.
masq() {
  case $1 in
    on) printf 'table ip bench_masq {\n chain post {\n  type nat hook postrouting priority 100;\n  ip saddr 192.168.10.200 ip daddr %s masquerade\n }\n}\n' "$pod_ip" |
          $cilia lab exec k8s-ctr -- nft -f - ;;
    off) $cilia lab exec k8s-ctr -- nft delete table ip bench_masq ;;
  esac
}

# run PATH WRK-ARGS...: wrk from the path's client towards its target.
run() {
  local target rc=0
  case $1 in
    clusterip-*) target=$cip ;; lbip-local) target=$lbip_local ;; lbip-*) target=$lbip ;;
    direct-local) target=$local_ip ;; direct-*) target=$pod_ip ;;
  esac
  case $1 in
    *-pod) $cilia exec curl-pod -- wrk "${@:2}" "http://$target/" ;;
    *-node) $cilia lab exec k8s-ctr -- wrk "${@:2}" "http://$target/" ;;
    *-router | *-local) $cilia lab exec router -- wrk "${@:2}" "http://$target/" ;;
    direct-masq)
      masq on
      $cilia lab exec router -- wrk "${@:2}" "http://$target/" || rc=$?
      masq off
      return $rc
      ;;
  esac
}
rate() { awk '/Requests\/sec/ {r=int($2)} END {print r+0}'; }
errors() { awk '/Socket errors|Non-2xx/ {print}'; }
declare -A conn req conn_pair req_pair
# Group by group, rounds interleaved within a group: a service path, then its direct twins.
groups=("clusterip-pod direct-pod" "clusterip-node direct-node" "lbip-local direct-local"
  "lbip-router direct-router direct-masq")
for group in "${groups[@]}"; do
  for r in $(seq "$rounds"); do
    for p in $group; do
      out=$(run "$p" -t1 -c32 -d"${secs}s" -H 'Connection: close' 2>&1) || echo "round $r $p (new connections): $out" >&2
      conn[$p]+="$(echo "$out" | rate) "
      e=$(echo "$out" | errors); [ -z "$e" ] || echo "round $r $p (new connections): $e" >&2
      out=$(run "$p" -t1 -c32 -d"${secs}s" 2>&1) || echo "round $r $p (keep-alive): $out" >&2
      req[$p]+="$(echo "$out" | rate) "
      e=$(echo "$out" | errors); [ -z "$e" ] || echo "round $r $p (keep-alive): $e" >&2
    done
    # This round's ratio of the service path to each twin, measured seconds apart.
    set -- $group
    svc=$1
    c1=$(echo "${conn[$svc]}" | awk '{print $NF}'); q1=$(echo "${req[$svc]}" | awk '{print $NF}')
    for twin in "${@:2}"; do
      c2=$(echo "${conn[$twin]}" | awk '{print $NF}'); q2=$(echo "${req[$twin]}" | awk '{print $NF}')
      conn_pair[$svc/$twin]+="$(awk "BEGIN {print ($c2 > 0) ? $c1/$c2 : 0}") "
      req_pair[$svc/$twin]+="$(awk "BEGIN {print ($q2 > 0) ? $q1/$q2 : 0}") "
    done
  done
done
printf '%-38s %12s %8s %12s %8s\n' path "new conn/s" ratio "requests/s" ratio
for group in "${groups[@]}"; do
  set -- $group
  for twin in "${@:2}"; do
    for p in "$1" "$twin"; do
      c=$(echo "${conn[$p]}" | median); q=$(echo "${req[$p]}" | median)
      cb=$(echo "${conn[$twin]}" | median); qb=$(echo "${req[$twin]}" | median)
      printf '%-38s %12s %8s %12s %8s\n' "$p" "$c" "$(awk "BEGIN {printf \"%.2f\", $c/$cb}")" \
        "$q" "$(awk "BEGIN {printf \"%.2f\", $q/$qb}")"
    done
  done
done
for group in "${groups[@]}"; do
  set -- $group
  for twin in "${@:2}"; do
    printf '%-38s %12s %8s %12s %8s\n' "$1 / $twin (paired)" "" \
      "$(echo "${conn_pair[$1/$twin]}" | median | awk '{printf "%.2f", $1}')" \
      "" "$(echo "${req_pair[$1/$twin]}" | median | awk '{printf "%.2f", $1}')"
  done
done
echo "($rounds rounds of ${secs}s each, medians; paired: the median of each round's ratio to the twin;"
echo " wrk -t1 -c32; backends: $pod on k8s-w1, $local_pod on k8s-ctr)"
