#!/usr/bin/env bash
# Flow events: what they cost the datapath, and how many an agent takes in before it loses some.
#
# One lab in tunnel mode with kube-proxy replacement (the guide's webpod and curl-pod). Load:
# wrk -t1 -c16 from curl-pod to the webpod ClusterIP, keep-alive requests ("requests/s") and a new
# connection per request (`Connection: close`, "connections/s"). Modes, interleaved per round,
# medians reported with their ratio to "off":
#   off      events off on every node (drop and forward counters only, as always)
#   medium   the agent's default: drops, and traces of SYN/FIN/RST and non-TCP packets
#   follow   medium with `cilia observe -f` attached, unfiltered (skipped when the CLI has no
#            observe yet)
#   follow-pod  medium with `cilia observe -f --pod curl-pod` attached, as the guide runs it
# For the follow modes the follower's CPU (share of one core over both wrk runs) is reported too.
# Then the events level "all" (a trace of every packet where it enters and where it leaves a
# program) under keep-alive load of 1, 4, 16 and 64 connections: events written to k8s-ctr's ring
# buffer per second and events lost (the ring buffer full because the agent's reader fell
# behind); the highest rate without loss is what the agent sustained.
# The level is set straight in each node's pinned cilia_events_cfg map (examples/flow-events).
# Run as root from the repository root:
#   scripts/bench/flow-events.sh [ROUNDS] [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/../.."
rounds=${1:-3}
secs=${2:-5}
[ -n "${SKIP_BUILD:-}" ] || cargo build --release -q -p datapath --example flow-events
fe=$PWD/target/release/examples/flow-events
source scripts/bench/lib.sh
bench_lab fev examples/guide/webpod.yaml examples/guide/curl-pod.yaml
$cilia config set routing-mode=tunnel tunnel-protocol=vxlan auto-direct-node-routes=false \
  --set kubeProxyReplacement=true >/dev/null
nodes="k8s-ctr k8s-w1 k8s-w0"
pins=/sys/fs/bpf/cilia/$CILIA_LAB
vip=$($cilia get svc webpod -o jsonpath='{.spec.clusterIP}')

# Every webpod answers through the ClusterIP again after the agents' restart.
ok=0
for _ in $(seq 300); do
  ok=1
  for _ in 1 2 3 4 5 6; do
    $cilia exec curl-pod -- curl -s -m 2 -o /dev/null "http://$vip/" || { ok=0; break; }
  done
  [ $ok = 1 ] && [ -e "$pins/k8s-w0/cilia_events_cfg" ] && break
  sleep 0.5
done
[ $ok = 1 ] || { echo "the ClusterIP does not answer in tunnel mode" >&2; exit 1; }
# The backends close first and would keep TIME_WAIT sockets a new connection may run into.
for pod in $($cilia get pod -l app=webpod -o jsonpath='{range .items[*]}{.metadata.name}{" "}{end}'); do
  $cilia exec "$pod" -- sysctl -qw net.ipv4.tcp_max_tw_buckets=0 >/dev/null 2>&1 || true
done

level() { for n in $nodes; do $fe "$pins/$n" level "$1"; done; }
stat() { $fe "$pins/k8s-ctr" counters | awk -v k="$1" '{for (i = 1; i < NF; i++) if ($i == k) print $(i + 1)}'; }
wrk_rate() { # wrk_rate CONNECTIONS [HEADER]: requests per second
  local args=(-t1 -c"$1" -d"${secs}s")
  [ -z "${2:-}" ] || args+=(-H "$2")
  $cilia exec curl-pod -- wrk "${args[@]}" "http://$vip/" | awk '/Requests\/sec/ {print $2}'
}

modes="off medium"
if $cilia observe --help >/dev/null 2>&1; then modes="$modes follow follow-pod"; else
  echo "(cilia has no observe command yet: the follow mode is skipped)" >&2
fi
follower=""
stop_follower() { [ -z "$follower" ] || { kill "$follower" 2>/dev/null || true; wait "$follower" 2>/dev/null || true; follower=""; }; }
trap 'stop_follower; $cilia lab down >/dev/null 2>&1 || true' EXIT

# The CPU time (in clock ticks) process $1 has used so far.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null || echo 0; }
hz=$(getconf CLK_TCK)
declare -A rps cps fcpu
for r in $(seq "$rounds"); do
  for mode in $modes; do
    case $mode in
      off) level off ;;
      medium) level medium ;;
      follow) level medium; $cilia observe -f >/tmp/fev$$.flows 2>/dev/null & follower=$! ; sleep 1 ;;
      follow-pod) level medium; $cilia observe -f --pod curl-pod >/tmp/fev$$.pod.flows 2>/dev/null & follower=$! ; sleep 1 ;;
    esac
    t0=$(date +%s.%N); u0=0; [ -z "$follower" ] || u0=$(cpu_ticks "$follower")
    q=$(wrk_rate 16); c=$(wrk_rate 16 "Connection: close")
    cpu=""
    if [ -n "$follower" ]; then
      u1=$(cpu_ticks "$follower"); t1=$(date +%s.%N)
      cpu=$(echo "100 * ($u1 - $u0) / $hz / ($t1 - $t0)" | bc -l)
      fcpu[$mode]+="$cpu "
      cpu=$(printf "  follower %5.1f%% of a core" "$cpu")
    fi
    stop_follower
    rps[$mode]+="$q "; cps[$mode]+="$c "
    printf "round %s %-10s: %10s requests/s %10s connections/s%s\n" "$r" "$mode" "$q" "$c" "$cpu" >&2
  done
done

if [ -s /tmp/fev$$.flows ]; then
  echo >&2
  echo "the follower received $(wc -l </tmp/fev$$.flows) flows in its last run, e.g.:" >&2
  grep -m2 'to-overlay' /tmp/fev$$.flows >&2 || head -2 /tmp/fev$$.flows >&2
fi
if [ -s /tmp/fev$$.pod.flows ]; then
  echo "the --pod curl-pod follower received $(wc -l </tmp/fev$$.pod.flows) flows in its last run" >&2
fi
rm -f /tmp/fev$$.flows /tmp/fev$$.pod.flows
echo
printf "%-11s %14s %8s %16s %8s %14s\n" mode "requests/s" ratio "connections/s" ratio "follower CPU"
q0=$(echo ${rps[off]} | median); c0=$(echo ${cps[off]} | median)
for mode in $modes; do
  q=$(echo ${rps[$mode]} | median); c=$(echo ${cps[$mode]} | median)
  f=""; [ -z "${fcpu[$mode]:-}" ] || f=$(printf "%13.1f%%" "$(echo ${fcpu[$mode]} | median)")
  printf "%-11s %14s %7.3fx %16s %7.3fx %14s\n" "$mode" "$q" "$(echo "$q/$q0" | bc -l)" "$c" "$(echo "$c/$c0" | bc -l)" "$f"
done

echo
echo "events level all, keep-alive load; events on k8s-ctr (the client's node):"
printf "%-12s %12s %14s %12s\n" connections "requests/s" "written/s" "lost/s"
level all
sustained=0
for conns in 1 4 16 64; do
  w0=$(stat written); l0=$(stat lost); t0=$(date +%s.%N)
  q=$(wrk_rate "$conns")
  w1=$(stat written); l1=$(stat lost); t1=$(date +%s.%N)
  dt=$(echo "$t1 - $t0" | bc -l)
  ws=$(echo "($w1 - $w0) / $dt" | bc -l); ls=$(echo "($l1 - $l0) / $dt" | bc -l)
  printf "%-12s %12s %14.0f %12.0f\n" "$conns" "$q" "$ws" "$ls"
  if [ "$l1" = "$l0" ] && [ "$(echo "$ws > $sustained" | bc -l)" = 1 ]; then sustained=$ws; fi
done
level medium
printf "sustained without loss: %.0f events/s (ring buffer of 1 MiB, one reader thread per agent)\n" "$sustained"
