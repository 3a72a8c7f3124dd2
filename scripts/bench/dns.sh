#!/usr/bin/env bash
# Cluster DNS: the agent's server against dnsmasq, side by side in one run, on the same path: the
# same client pod (curl-pod on k8s-ctr) asks its gateway address (the node's router IP), the agent on
# port 53, dnsmasq on port 5353 in the same node namespace. dnsmasq serves the same cluster names
# from a hosts file and forwards the rest to the same upstream (the router's dnsmasq), as the agent
# does through the node's resolv.conf. dnsperf runs in the pod.
#
#   max rate       queries/s, closed loop, UDP, A queries over 11 Service names (rounds interleaved,
#                  median)
#   latency        p50 and p99 at a fixed rate (RATE, 2000 q/s), from every response's latency
#   cache miss     p50 and p99 of MISSES distinct names (h-10-123-<c>-<d>.dyn.lab, which the router's
#                  dnsmasq synthesizes), each asked once: every query goes to the upstream
#   cache hit      the same names asked again at once, within their TTL
#
# Run as root from anywhere: scripts/bench/dns.sh [ROUNDS] [SECONDS]. SKIP_BUILD=1 uses the last
# release build.
set -euo pipefail
cd "$(dirname "$0")/../.."
. scripts/bench/lib.sh
rounds=${1:-3}
secs=${2:-5}
rate=${RATE:-2000}
misses=${MISSES:-1000}
ref_port=5353

bench_lab dnsb examples/guide/webpod.yaml examples/guide/curl-pod.yaml
work=$(mktemp -d)
chmod 755 "$work"
ref_pid=
cleanup() {
  [ -z "$ref_pid" ] || kill "$ref_pid" 2>/dev/null || true
  rm -rf "$work"
  $cilia lab down >/dev/null 2>&1 || true
}
trap cleanup EXIT

# Ten more Services, so that the names are not a single cache line.
for i in $(seq 0 9); do
  printf 'apiVersion: v1\nkind: Service\nmetadata: {name: bench-%s}\nspec:\n  ports: [{name: http, port: 80}]\n---\n' "$i"
done | $cilia apply -f - >/dev/null
names="webpod $(seq -f 'bench-%g' 0 9 | tr '\n' ' ')"
: >"$work/hosts"
: >"$work/cluster.txt"
for n in $names; do
  ip=""
  for _ in $(seq 100); do
    ip=$($cilia get svc "$n" -o jsonpath='{.spec.clusterIP}')
    [ -n "$ip" ] && break
    sleep 0.1
  done
  echo "$ip $n.default.svc.cluster.local" >>"$work/hosts"
  echo "$n.default.svc.cluster.local A" >>"$work/cluster.txt"
done

gw=$($cilia exec curl-pod -- ip route show default | awk '{print $3; exit}')
upstream=$(awk '/^nameserver/ {print $2; exit}' "/etc/netns/$CILIA_LAB-k8s-ctr/resolv.conf")
# The reference: dnsmasq in the node's namespace, on the gateway address, with the hosts file.
ip netns exec "$CILIA_LAB-k8s-ctr" dnsmasq --keep-in-foreground --conf-file=/dev/null --no-hosts --no-resolv \
  --pid-file= --log-facility=/dev/null --bind-interfaces --listen-address="$gw" --port=$ref_port \
  --addn-hosts="$work/hosts" --local=/cluster.local/ --local-ttl=5 --server="$upstream" --cache-size=10000 \
  </dev/null >/dev/null 2>&1 &
ref_pid=$!

dnsperf_in_pod() { $cilia exec curl-pod -- dnsperf -s "$gw" "$@" 2>&1; }
# Waits until both servers answer every cluster name.
for port in 53 $ref_port; do
  for _ in $(seq 100); do
    out=$(dnsperf_in_pod -p $port -d "$work/cluster.txt" -n 1 -t 1)
    grep -q "NOERROR 11 (100.00%)" <<<"$out" && break
    sleep 0.2
  done
done

qps() { awk '/Queries per second/ {printf "%d", $4}'; }
lost() { awk '/Queries lost/ {print $3; exit}'; }
# p50 and p99 in microseconds of dnsperf -v's per-response lines.
pcts() {
  awk '/^> / {printf "%d\n", $NF * 1000000}' | sort -g |
    awk '{a[NR]=$1} END {if (NR == 0) {print "- -"; exit}; i=int(NR*0.5); j=int(NR*0.99); if (i<1) i=1; if (j<1) j=1; print a[i], a[j]}'
}
codes() { awk '/Response codes/ {$1=""; $2=""; print; exit}' | sed 's/^ *//'; }
ratio() { echo "scale=2; $1 / $2" | bc; }

echo "cluster DNS vs dnsmasq (hosts file), lab $CILIA_LAB, client curl-pod -> $gw (agent :53, dnsmasq :$ref_port)"
echo "max rate: $rounds rounds x ${secs}s, closed loop (dnsperf -c 2 -q 100), A over 11 Service names"
a_runs=""
d_runs=""
for r in $(seq "$rounds"); do
  a=$(dnsperf_in_pod -p 53 -d "$work/cluster.txt" -l "$secs" -c 2 -q 100)
  d=$(dnsperf_in_pod -p $ref_port -d "$work/cluster.txt" -l "$secs" -c 2 -q 100)
  echo "  round $r: agent $(qps <<<"$a") q/s (lost $(lost <<<"$a")), dnsmasq $(qps <<<"$d") q/s (lost $(lost <<<"$d"))"
  a_runs="$a_runs $(qps <<<"$a")"
  d_runs="$d_runs $(qps <<<"$d")"
done
a_qps=$(median <<<"$a_runs")
d_qps=$(median <<<"$d_runs")

read -r a50 a99 < <(dnsperf_in_pod -p 53 -d "$work/cluster.txt" -l "$secs" -Q "$rate" -v | pcts)
read -r d50 d99 < <(dnsperf_in_pod -p $ref_port -d "$work/cluster.txt" -l "$secs" -Q "$rate" -v | pcts)

# Cache misses: distinct names per server, each asked once at a modest rate; then again (hits).
for side in agent dnsmasq; do
  base=1; [ $side = agent ] || base=101
  for i in $(seq 0 $((misses - 1))); do
    echo "h-10-123-$((base + i / 250))-$((1 + i % 250)).dyn.lab A"
  done >"$work/miss-$side.txt"
done
miss_run() { dnsperf_in_pod -p "$1" -d "$2" -n 1 -Q 500 -v; }
am=$(miss_run 53 "$work/miss-agent.txt")
ah=$(miss_run 53 "$work/miss-agent.txt")
dm=$(miss_run $ref_port "$work/miss-dnsmasq.txt")
dh=$(miss_run $ref_port "$work/miss-dnsmasq.txt")
read -r am50 am99 < <(pcts <<<"$am")
read -r ah50 ah99 < <(pcts <<<"$ah")
read -r dm50 dm99 < <(pcts <<<"$dm")
read -r dh50 dh99 < <(pcts <<<"$dh")

echo
printf '%-34s %16s %16s %18s\n' "" "agent" "dnsmasq" "agent/dnsmasq"
printf '%-34s %16s %16s %18s\n' "max rate, q/s (median)" "$a_qps" "$d_qps" "$(ratio "$a_qps" "$d_qps")"
printf '%-34s %16s %16s %18s\n' "p50 at $rate q/s, us" "$a50" "$d50" "$(ratio "$a50" "$d50")"
printf '%-34s %16s %16s %18s\n' "p99 at $rate q/s, us" "$a99" "$d99" "$(ratio "$a99" "$d99")"
printf '%-34s %16s %16s %18s\n' "cache miss p50 / p99, us" "$am50 / $am99" "$dm50 / $dm99" "$(ratio "$am50" "$dm50") / $(ratio "$am99" "$dm99")"
printf '%-34s %16s %16s %18s\n' "cache hit p50 / p99, us" "$ah50 / $ah99" "$dh50 / $dh99" "$(ratio "$ah50" "$dh50") / $(ratio "$ah99" "$dh99")"
echo
echo "cache miss answers: agent $(codes <<<"$am"); dnsmasq $(codes <<<"$dm")"
echo "cache hit answers:  agent $(codes <<<"$ah"); dnsmasq $(codes <<<"$dh")"
echo "upstream: the router's dnsmasq at $upstream (authoritative for lab., $misses names each)"
