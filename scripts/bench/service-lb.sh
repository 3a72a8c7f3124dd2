#!/usr/bin/env bash
# Service load balancing on a forwarding "node", as kube-proxy's baselines in the anchors: a client
# namespace sends to service VIPs routed through a node namespace that holds the rules, to a
# backend namespace running the whoami server. Paths, at 1, 1 000 and 10 000 services (the target
# is the last service of the list):
#   direct    client → backend IP, forwarded, no NAT
#   iptables  kube-proxy's iptables layout (KUBE-SERVICES → KUBE-SVC → KUBE-SEP DNAT), nf_tables backend
#   nftables  kube-proxy's nftables layout (one verdict map on daddr . l4proto . dport)
#   cilia     cilia's eBPF datapath (tc on the node's devices), programmed with the same services
# Load: wrk -t1 -c32, new connection per request (`Connection: close`) and keep-alive requests.
# Rounds are interleaved and medians reported. Run as root: scripts/bench/service-lb.sh [ROUNDS] [SECONDS]
# COUNTS="1 1000 10000" and PATHS="direct iptables nftables cilia" choose a subset (direct must
# come first: the other paths' ratios are to it). BASE_PROGRAM=path/to/another/build's/lb-program
# adds the path `cilia-base`, that build's datapath, to compare two builds side by side.
set -euo pipefail
cd "$(dirname "$0")/../.."
rounds=${1:-2}
secs=${2:-3}
counts=${COUNTS:-1 1000 10000}
paths=${PATHS:-direct iptables nftables cilia}
[ -z "${BASE_PROGRAM:-}" ] || paths="$paths cilia-base"
[ "${paths%% *}" = direct ] || { echo "PATHS must start with direct" >&2; exit 2; }
[ -n "${SKIP_BUILD:-}" ] || cargo build --release --bins -q
cargo build --release -q -p datapath --example lb-program
cilia=$PWD/target/release/cilia
program=$PWD/target/release/examples/lb-program
mountpoint -q /sys/fs/bpf || mount -t bpf bpf /sys/fs/bpf

p=kprb$$
pin=/sys/fs/bpf/$p
work=$(mktemp -d)
cleanup() {
  rm -rf "$pin" "$work"
  for ns in c n s; do
    ip netns pids "$p-$ns" 2>/dev/null | xargs -r kill -9 2>/dev/null || true
    ip netns del "$p-$ns" 2>/dev/null || true
  done
}
trap cleanup EXIT

for ns in c n s; do ip netns add "$p-$ns"; ip -n "$p-$ns" link set lo up; done
ip link add eth0 netns "$p-c" type veth peer name eth1 netns "$p-n"
ip link add eth0 netns "$p-s" type veth peer name lxcs netns "$p-n"
ip -n "$p-c" link set eth0 up; ip -n "$p-s" link set eth0 up
ip -n "$p-n" link set eth1 up; ip -n "$p-n" link set lxcs up
ip -n "$p-c" addr add 10.97.1.10/24 dev eth0; ip -n "$p-n" addr add 10.97.1.1/24 dev eth1
ip -n "$p-s" addr add 10.97.2.10/24 dev eth0; ip -n "$p-n" addr add 10.97.2.1/24 dev lxcs
ip -n "$p-c" route add default via 10.97.1.1; ip -n "$p-s" route add default via 10.97.2.1
ip netns exec "$p-n" sysctl -qw net.ipv4.ip_forward=1
# The backend closes first (whoami shuts down after a `Connection: close` response), so it holds the
# TIME_WAIT sockets, and the client cycles through its ephemeral ports within a few seconds. Within
# one path a reused port passes the backend's TIME_WAIT check, but the client derives its ISN and
# timestamp offset from a keyed hash that includes the address it dials (backend IP for direct, VIP
# otherwise): after each switch between the two, SYNs meeting the previous path's TIME_WAIT sockets
# are PAWS-rejected (TcpExtPAWSTimewait), answered with a stale ACK, reset and retransmitted after
# the 1 s SYN timeout (TcpExtTCPSynRetrans), which halved whichever path came first after a switch
# (direct in every round). No TIME_WAIT on the backend, identically for every path, so each path
# starts from the same state.
ip netns exec "$p-s" sysctl -qw net.ipv4.tcp_max_tw_buckets=0
ip netns exec "$p-s" setsid "$cilia" lab whoami --name backend --port 80 >/dev/null 2>&1 </dev/null &
disown
sleep 0.5

first_vip=10.200.0.1
vip_of() { python3 -c "import ipaddress,sys; print(ipaddress.ip_address('$first_vip') + int(sys.argv[1]) - 1)" "$1"; }

iptables_rules() { # kube-proxy iptables mode, nat table
  python3 - "$1" <<'PY'
import ipaddress, sys
n = int(sys.argv[1]); first = ipaddress.ip_address("10.200.0.1")
out = ["*nat", ":PREROUTING ACCEPT [0:0]", ":KUBE-SERVICES - [0:0]"]
out += [f":KUBE-SVC-{i:06d} - [0:0]\n:KUBE-SEP-{i:06d} - [0:0]" for i in range(n)]
out.append("-A PREROUTING -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES")
for i in range(n):
    out.append(f"-A KUBE-SERVICES -d {first + i}/32 -p tcp -m comment --comment \"default/svc{i}:http cluster IP\" -m tcp --dport 80 -j KUBE-SVC-{i:06d}")
for i in range(n):
    out.append(f"-A KUBE-SVC-{i:06d} -m comment --comment \"default/svc{i}:http -> 10.97.2.10:80\" -j KUBE-SEP-{i:06d}")
    out.append(f"-A KUBE-SEP-{i:06d} -p tcp -m comment --comment \"default/svc{i}:http\" -m tcp -j DNAT --to-destination 10.97.2.10:80")
out.append("COMMIT")
print("\n".join(out))
PY
}

nft_rules() { # kube-proxy nftables mode
  python3 - "$1" <<'PY'
import ipaddress, sys
n = int(sys.argv[1]); first = ipaddress.ip_address("10.200.0.1")
print("table ip kube-proxy {")
for i in range(n):
    print(f"  chain endpoint-{i} {{\n    meta l4proto tcp dnat to 10.97.2.10:80\n  }}")
    print(f"  chain service-{i} {{\n    numgen random mod 1 vmap {{ 0 : goto endpoint-{i} }}\n  }}")
elems = ",\n      ".join(f"{first + i} . tcp . 80 : goto service-{i}" for i in range(n))
print("  map service-ips {\n    type ipv4_addr . inet_proto . inet_service : verdict\n    elements = { " + elems + " }\n  }")
print("  chain services {\n    ip daddr . meta l4proto . th dport vmap @service-ips\n  }")
print("  chain nat-prerouting {\n    type nat hook prerouting priority dstnat; policy accept;\n    jump services\n  }")
print("}")
PY
}

setup() { # setup MODE COUNT
  case $1 in
    direct) ;;
    iptables) iptables_rules "$2" >"$work/ipt"; ip netns exec "$p-n" iptables-restore <"$work/ipt" ;;
    nftables) nft_rules "$2" >"$work/nft"; ip netns exec "$p-n" nft -f "$work/nft" ;;
    cilia) nsenter --net="/run/netns/$p-n" "$program" "$pin" eth1 lxcs "$2" "$first_vip" 10.97.2.10 2>/dev/null ;;
    cilia-base) nsenter --net="/run/netns/$p-n" "$BASE_PROGRAM" "$pin" eth1 lxcs "$2" "$first_vip" 10.97.2.10 2>/dev/null ;;
  esac
}
teardown() {
  case $1 in
    iptables) ip netns exec "$p-n" iptables -t nat -F; ip netns exec "$p-n" iptables -t nat -X ;;
    nftables) ip netns exec "$p-n" nft delete table ip kube-proxy ;;
    cilia|cilia-base) rm -rf "$pin" ;;
  esac
  # Connection tracking entries of one path must not meet the next path's connections.
  ip netns exec "$p-n" conntrack -F >/dev/null 2>&1 || true
}
wrk_rate() { # wrk_rate URL [close]
  if [ "${2:-}" = close ]; then
    ip netns exec "$p-c" wrk -t1 -c32 -d"${secs}s" -H 'Connection: close' "$1"
  else
    ip netns exec "$p-c" wrk -t1 -c32 -d"${secs}s" "$1"
  fi | awk '/Requests\/sec/ {print $2}'
}

# The machine's first seconds of load run slower (caches, frequency, the backend's first
# connections): an untimed warm-up keeps that out of the first measured path.
wrk_rate "http://10.97.2.10/" close >/dev/null

# Ratios are taken within a round (each path against the direct run just before it) and their
# median reported: the machine's speed drifts between rounds far more than within one.
declare -A conn req conn_ratio req_ratio
for count in $counts; do
  target=$(vip_of "$count")
  for r in $(seq "$rounds"); do
    for mode in $paths; do
      setup "$mode" "$count"
      url="http://$target/"; [ "$mode" = direct ] && url="http://10.97.2.10/"
      c=$(wrk_rate "$url" close); q=$(wrk_rate "$url")
      teardown "$mode"
      [ "$mode" = direct ] && { dc=$c; dq=$q; }
      conn[$mode-$count]+="$c "; req[$mode-$count]+="$q "
      conn_ratio[$mode-$count]+="$(echo "$c/$dc" | bc -l) "; req_ratio[$mode-$count]+="$(echo "$q/$dq" | bc -l) "
      echo "services $count round $r $mode: $c conn/s, $q req/s" >&2
    done
  done
done

median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
echo
printf "%-10s %9s | %-34s | %-34s\n" "" services "new connections/s (ratio to direct)" "keep-alive requests/s (ratio)"
for count in $counts; do
  for mode in $paths; do
    c=$(echo ${conn[$mode-$count]} | median); q=$(echo ${req[$mode-$count]} | median)
    cr=$(echo ${conn_ratio[$mode-$count]} | median); qr=$(echo ${req_ratio[$mode-$count]} | median)
    printf "%-10s %9s | %12.0f  %6.2fx                | %12.0f  %6.2fx\n" "$mode" "$count" "$c" "$cr" "$q" "$qr"
  done
done
echo "(medians of $rounds interleaved rounds of ${secs}s; ratios: median of the per-round ratios to direct)"
