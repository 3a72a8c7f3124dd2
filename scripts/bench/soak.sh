#!/usr/bin/env bash
# Soak: MINUTES of bounded load and churn in a lab of its own, sampled every minute, to show that
# nothing grows without bound (docs/soak.md).
#
# Load (each a loop of one request every 250 ms, each inside a lab namespace, counted ok/failed):
#   name       curl-pod (k8s-ctr) → http://webpod/       (cluster DNS, per-packet service LB)
#   clusterip  curl-pod (k8s-ctr) → http://CLUSTER_IP/
#   lbip       router → http://LB_IP/                     (L2 announcements: ARP, no route; SNAT
#                                                          when the backend is on another node)
# Churn (one round a minute until three minutes before the end): the churn Deployment scaled
# between 1 and 6 replicas, one of its pods deleted, a burst of 20 Services created and deleted,
# a Deployment and Service created and deleted (`cilia delete deploy/extra svc/extra`), a webpod
# pod deleted every fifth round; one `kill -9` of the operator (at a quarter of the run) and of
# k8s-w1's agent (at half). The last three minutes are quiet, so the end shows what churn left.
#
# Samples each minute: RSS and fds of every process of the lab, entries of every BPF map and link
# pins per node, etcd's revision, database size (and in use) and compactions, WARN and ERROR lines
# per log, requests ok and failed. At the end: baseline → end per metric, failed requests, and a
# verdict per metric (bounded, or growing with its slope). Samples: $SOAK_OUT/samples.tsv.
#
# Run as root from the repository root: scripts/bench/soak.sh MINUTES
set -uo pipefail
cd "$(dirname "$0")/../.."
minutes=${1:?usage: scripts/bench/soak.sh MINUTES (at least 8)}
[ "$minutes" -ge 8 ] || { echo "MINUTES must be at least 8" >&2; exit 2; }
[ -n "${SKIP_BUILD:-}" ] || { cargo build --release --bins -q && cargo build --release -q -p datapath --example map-entries; } || exit 1
lab=soak$$
export CILIA_LAB=$lab
out=${SOAK_OUT:-/tmp/cilia-soak-$lab}
mkdir -p "$out/bin"
# The lab runs the binaries it was started from (the supervisor restarts processes from its own
# executable): a copy, so that a rebuild during the run changes nothing.
cp target/release/cilia target/release/cilia-cni target/release/examples/map-entries "$out/bin/" || exit 1
cilia=$out/bin/cilia
map_entries=$out/bin/map-entries
samples=$out/samples.tsv
: >"$samples"
bg_pids=()

cleanup() {
  for p in "${bg_pids[@]}"; do kill -TERM -- "-$p" 2>/dev/null; done
  sleep 1
  for p in "${bg_pids[@]}"; do kill -KILL -- "-$p" 2>/dev/null; done
  $cilia lab down >/dev/null 2>&1 || $cilia lab down >/dev/null 2>&1
  echo "lab $lab removed; samples and logs in $out"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log() { echo "[$(date -u +%H:%M:%S)] $*"; }
die() { log "FAILED: $*"; exit 1; }

log "lab $lab up (output in $out)"
$cilia lab up >"$out/lab-up.log" 2>&1 || die "lab up: $(tail -3 "$out/lab-up.log")"
# The guide's end state: VXLAN between the nodes (k8s-w0 is behind the router), L2 announcements.
$cilia config set routing-mode=tunnel tunnel-protocol=vxlan auto-direct-node-routes=false \
  --set kubeProxyReplacement=true --set l2announcements.enabled=true >"$out/config.log" 2>&1 ||
  die "config set: $(tail -3 "$out/config.log")"
$cilia status --wait --wait-duration 3m >"$out/status.log" 2>&1 || die "status: $(tail -5 "$out/status.log")"
$cilia apply -f examples/guide/lb-ippool.yaml -f examples/guide/webpod.yaml -f examples/guide/curl-pod.yaml \
  -f examples/guide/l2-policy.yaml >/dev/null || die "apply"
$cilia patch svc webpod -p '{"spec":{"type":"LoadBalancer"}}' >/dev/null || die "patch webpod"
cat <<EOF | $cilia apply -f - >/dev/null || die "apply churn"
apiVersion: apps/v1
kind: Deployment
metadata: {name: churn}
spec:
  replicas: 2
  selector: {matchLabels: {app: churn}}
  template:
    metadata: {labels: {app: churn}}
    spec:
      containers: [{name: whoami, image: traefik/whoami, ports: [{containerPort: 80}]}]
---
apiVersion: v1
kind: Service
metadata: {name: churn}
spec:
  selector: {app: churn}
  ports: [{port: 80, targetPort: 80}]
EOF

ready_pods() {
  $cilia get pod -A -o jsonpath='{range .items[*]}{.status.conditions[?(@.type=="Ready")].status}{"\n"}{end}' 2>/dev/null |
    grep -c True
}
for _ in $(seq 240); do [ "$(ready_pods)" -ge 6 ] && break; sleep 0.5; done
[ "$(ready_pods)" -ge 6 ] || die "pods not ready: $($cilia get pod -o wide 2>&1)"
lb_ip=""
for _ in $(seq 120); do
  lb_ip=$($cilia get svc webpod -o jsonpath='{.status.loadBalancer.ingress[0].ip}' 2>/dev/null)
  [ -n "$lb_ip" ] && $cilia lab exec router -- curl -s -m 2 -o /dev/null "http://$lb_ip/" 2>/dev/null && break
  sleep 0.5
done
[ -n "$lb_ip" ] || die "webpod has no LoadBalancer IP"
cluster_ip=$($cilia get svc webpod -o jsonpath='{.spec.clusterIP}')
$cilia exec curl-pod -- curl -s -m 2 -o /dev/null http://webpod/ || die "curl-pod cannot reach webpod by name"
log "ready: webpod ClusterIP $cluster_ip, LB IP $lb_ip (announced, no route on the router)"

# One request every 250 ms; a line per request: "<unix time> ok", or "<unix time> fail <curl's exit
# code>" (7: refused, 28: timed out, 52: empty reply, 56: reset).
loop_body() {
  echo "while :; do curl -s -m 3 -o /dev/null -f $1; rc=\$?; if [ \$rc = 0 ]; then r=ok; else r=\"fail \$rc\"; fi; echo \"\$(date +%s.%N | cut -c1-14) \$r\"; sleep 0.25; done"
}
start_bg() { # start_bg NAME CMD...: in a process group of its own, output to $out/NAME.log
  local name=$1
  shift
  setsid "$@" >"$out/$name.log" 2>"$out/$name.err" &
  bg_pids+=($!)
}
start_bg load-name $cilia exec curl-pod -- sh -c "$(loop_body http://webpod/)"
start_bg load-clusterip $cilia exec curl-pod -- sh -c "$(loop_body "http://$cluster_ip/")"
start_bg load-lbip $cilia lab exec router -- sh -c "$(loop_body "http://$lb_ip/")"

proc_pid() { $cilia lab status 2>/dev/null | awk -v n="$1" '$1 == n && $4 == "running" {print $3}'; }

churn_round() { # churn_round N
  local n=$1 replicas pod names=()
  replicas=$((1 + RANDOM % 6))
  $cilia patch deploy churn -p "{\"spec\":{\"replicas\":$replicas}}" >/dev/null
  pod=$($cilia get pod -l app=churn -o jsonpath='{.items[0].metadata.name}' 2>/dev/null)
  [ -n "$pod" ] && $cilia delete pod "$pod" --ignore-not-found >/dev/null
  {
    for i in $(seq 0 19); do
      printf 'apiVersion: v1\nkind: Service\nmetadata: {name: burst-%s}\nspec:\n  selector: {app: churn}\n  ports: [{port: %s, targetPort: 80}]\n---\n' "$i" $((8000 + i))
    done
  } | $cilia apply -f - >/dev/null
  for i in $(seq 0 19); do names+=("svc/burst-$i"); done
  sleep 5
  $cilia delete "${names[@]}" --ignore-not-found >/dev/null
  cat <<EOF | $cilia apply -f - >/dev/null
apiVersion: apps/v1
kind: Deployment
metadata: {name: extra}
spec:
  replicas: 2
  selector: {matchLabels: {app: extra}}
  template:
    metadata: {labels: {app: extra}}
    spec:
      containers: [{name: whoami, image: traefik/whoami, ports: [{containerPort: 80}]}]
---
apiVersion: v1
kind: Service
metadata: {name: extra}
spec:
  type: LoadBalancer
  selector: {app: extra}
  ports: [{port: 80, targetPort: 80}]
EOF
  sleep 15
  $cilia delete deploy/extra svc/extra --ignore-not-found >/dev/null
  if [ $((n % 5)) -eq 4 ]; then
    pod=$($cilia get pod -l app=webpod -o jsonpath='{.items[0].metadata.name}' 2>/dev/null)
    [ -n "$pod" ] && $cilia delete pod "$pod" >/dev/null && echo "$(date +%s.%N | cut -c1-14) round $n: deleted webpod pod $pod"
  fi
  echo "round $n: churn scaled to $replicas"
}

churn() {
  local start=$SECONDS n=0 kill_op=$((minutes * 60 / 4)) kill_agent=$((minutes * 60 / 2)) stop=$(((minutes - 3) * 60))
  local op_killed="" agent_killed=""
  while [ $((SECONDS - start)) -lt "$stop" ]; do
    local round_start=$SECONDS t=$((SECONDS - start))
    if [ -z "$op_killed" ] && [ "$t" -ge "$kill_op" ]; then
      kill -9 "$(proc_pid operator)" && echo "$(date +%s.%N | cut -c1-14) t=${t}s: kill -9 operator" && op_killed=1
    fi
    if [ -z "$agent_killed" ] && [ "$t" -ge "$kill_agent" ]; then
      kill -9 "$(proc_pid agent-k8s-w1)" && echo "$(date +%s.%N | cut -c1-14) t=${t}s: kill -9 agent-k8s-w1" && agent_killed=1
    fi
    churn_round "$n"
    n=$((n + 1))
    local rest=$((60 - (SECONDS - round_start)))
    [ "$rest" -gt 0 ] && sleep "$rest"
  done
  # Back to the starting set, so that the end compares with the baseline.
  $cilia patch deploy churn -p '{"spec":{"replicas":2}}' >/dev/null
  echo "t=$((SECONDS - start))s: churn stopped after $n rounds"
}
export -f churn churn_round proc_pid
export cilia minutes
start_bg churn bash -c churn

etcd_status() {
  ETCDCTL_API=3 etcdctl --endpoints "unix:///run/cilia/lab/$lab/etcd.sock:0" endpoint status -w json 2>/dev/null |
    python3 -c 'import json,sys
s=json.load(sys.stdin)[0]["Status"]
print(s["header"]["revision"], s["dbSize"], s.get("dbSizeInUse", 0))' 2>/dev/null || echo "0 0 0"
}

sample() { # sample MINUTE
  local m=$1 name pid _rest node
  {
    while read -r name _host pid _rest; do
      [ -d "/proc/$pid" ] || continue
      echo "$m rss_kb:$name $(awk '/^VmRSS/ {print $2}' "/proc/$pid/status")"
      echo "$m fds:$name $(ls "/proc/$pid/fd" | wc -l)"
      echo "$m pid:$name $pid"
    done < <($cilia lab status 2>/dev/null | awk '/^PROCESS/ {p=1; next} p && $4 == "running" {print $1, $2, $3}')
    for node in k8s-ctr k8s-w1 k8s-w0; do
      "$map_entries" "/sys/fs/bpf/cilia/$lab/$node" 2>/dev/null | while read -r map count; do
        echo "$m $map:$node $count"
      done
    done
    read -r rev db inuse < <(etcd_status)
    echo "$m etcd_revision $rev"
    echo "$m etcd_db_bytes $db"
    echo "$m etcd_db_in_use_bytes $inuse"
    echo "$m etcd_compactions $(grep -c 'finished scheduled compaction' "/run/cilia/lab/$lab/logs/etcd.log" 2>/dev/null)"
    for f in /run/cilia/lab/"$lab"/logs/*.log; do
      name=$(basename "$f" .log)
      [ "$name" = etcd ] && continue
      echo "$m warn_lines:$name $(grep -c ' WARN ' "$f")"
      echo "$m error_lines:$name $(grep -c ' ERROR ' "$f")"
    done
    for path in name clusterip lbip; do
      echo "$m requests_ok:$path $(grep -c ' ok$' "$out/load-$path.log")"
      echo "$m requests_failed:$path $(grep -c ' fail' "$out/load-$path.log")"
    done
  } | sed 's/ /\t/; s/ /\t/' >>"$samples"
}

t0=$SECONDS
for m in $(seq 0 "$minutes"); do
  sleep $((t0 + m * 60 - SECONDS > 0 ? t0 + m * 60 - SECONDS : 0)) &
  wait $! # (a signal ends the wait at once; the EXIT trap cleans up)
  sample "$m"
  log "minute $m/$minutes: $(awk -F'\t' -v m="$m" '$1 == m && $2 ~ /^requests_/ {split($2, a, ":"); s[a[1]] += $3} END {printf "requests ok %d, failed %d", s["requests_ok"], s["requests_failed"]}' "$samples")"
done

echo
echo "churn:"
sed 's/^/  /' "$out/churn.log"
echo
python3 - "$samples" "$minutes" <<'EOF'
import sys
from collections import defaultdict

path, minutes = sys.argv[1], int(sys.argv[2])
series = defaultdict(dict)
for line in open(path):
    m, metric, value = line.rstrip("\n").split("\t")
    try:
        series[metric][int(m)] = float(value)
    except ValueError:
        pass

def slope(points):
    """Least-squares slope per minute."""
    if len(points) < 2:
        return 0.0
    xs, ys = zip(*points)
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    den = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / den if den else 0.0

def fmt(v):
    return f"{v:,.0f}"

quiet_from = minutes - 3  # churn stops here
rows = []
failed_total = 0
for metric in sorted(series):
    s = series[metric]
    kind = metric.split(":")[0]
    if kind == "pid":
        continue
    if all(v == 0 for v in s.values()) and not kind.startswith("requests"):
        continue
    end_m = max(s)
    end = s[end_m]
    if kind.startswith("requests"):
        if kind == "requests_failed":
            failed_total += end
        rows.append((metric, fmt(s.get(0, 0)), fmt(end), "failed" if kind == "requests_failed" and end else "-"))
        continue
    if kind in ("rss_kb", "fds"):
        # From the first five minutes on; a process restarted (kill -9) is measured from its restart.
        pids = series.get("pid:" + metric.split(":", 1)[1], {})
        restarts = [m for m in sorted(pids) if m - 1 in pids and pids[m] != pids[m - 1]]
        start = max(5, restarts[-1] + 5) if restarts else 5
        if start > end_m:
            start = restarts[-1] if restarts else 0
        base_m = min((m for m in s if m >= start), default=end_m)
        restarted = bool(restarts)
        base = s[base_m]
        pts = [(m, v) for m, v in s.items() if m >= base_m]
        growth = (end - base) / base if base else 0.0
        tol = 0.10
        verdict = "bounded" if growth < tol else f"growing {slope(pts):+,.1f}/min"
        if restarted:
            verdict += f" (restarted, from min {base_m})"
        rows.append((metric + (" (kB)" if kind == "rss_kb" else ""), f"{fmt(base)} (min {base_m})", fmt(end),
                     f"{verdict}, {growth:+.1%}"))
        continue
    if kind in ("warn_lines", "error_lines", "etcd_revision", "etcd_compactions"):
        pts = [(m, v) for m, v in s.items()]
        rows.append((metric, fmt(s.get(0, 0)), fmt(end), f"{slope(pts):+,.1f}/min"))
        continue
    # Gauges: map entries, link pins, etcd database size. The end (after the quiet minutes)
    # against the baseline and the range during churn.
    base = s.get(0, 0)
    peak = max(s.values())
    tol = max(0.10 * base, 2)
    if kind.startswith("cilia_ct4") or kind.startswith("cilia_snat") or kind.startswith("cilia_lb4_affinity"):
        # Flow state: the baseline is the load's own live flows, the most of minutes 1-5. The GC
        # runs every 30 s, so a minute's sample lands before or after a pass (a sawtooth whose
        # phase moves when an agent restarts): a leak is a peak that keeps rising, so the last
        # third's peak is held against the middle third's.
        base = max([v for m, v in s.items() if 1 <= m <= 5] or [base])
        tol = max(0.25 * base, 64)
        third = minutes // 3
        mid = [v for m, v in s.items() if third <= m < 2 * third]
        last = [v for m, v in s.items() if m >= 2 * third]
        if mid and last:
            rise = max(last) - max(mid)
            verdict = "bounded" if rise <= tol else f"growing: peak {fmt(max(mid))} -> {fmt(max(last))}"
            rows.append((metric, fmt(base), fmt(end), f"{verdict} (last third {fmt(min(last))}-{fmt(max(last))})"))
            continue
    if kind.startswith("etcd_db"):
        half = [(m, v) for m, v in s.items() if m >= minutes // 2]
        sl = slope(half)
        verdict = "bounded" if sl * minutes < 0.10 * max(peak, 1) else f"growing {sl:+,.0f} B/min"
        rows.append((metric, fmt(base), fmt(end), f"{verdict} (peak {fmt(peak)})"))
        continue
    verdict = "bounded" if end - base <= tol else f"growing {slope([(m, v) for m, v in s.items() if m >= 5]):+,.1f}/min"
    rows.append((metric, fmt(base), fmt(end), f"{verdict} (peak {fmt(peak)})"))

w = max(len(r[0]) for r in rows)
print(f"{'metric':<{w}}  {'baseline':>18}  {'end':>12}  verdict")
for r in rows:
    print(f"{r[0]:<{w}}  {r[1]:>18}  {r[2]:>12}  {r[3]}")
print()
print(f"failed requests: {failed_total:,.0f}")
EOF
# Each failed request with the churn event closest before it (webpod pod deletions and kills are
# the events that can fail a request in flight).
python3 - "$out" <<'EOF'
import re, sys
out = sys.argv[1]
events = []
for line in open(f"{out}/churn.log"):
    m = re.match(r"(\d+\.\d+) (.*)", line.strip())
    if m:
        events.append((float(m.group(1)), m.group(2)))
for path in ["name", "clusterip", "lbip"]:
    for line in open(f"{out}/load-{path}.log"):
        parts = line.split()
        if len(parts) >= 2 and parts[1] == "fail":
            t = float(parts[0])
            before = [e for e in events if e[0] <= t + 1]
            near = f"{t - before[-1][0]:+.2f} s after '{before[-1][1]}'" if before else "no churn event before it"
            code = parts[2] if len(parts) > 2 else "?"
            print(f"  failed: {path:<9} curl exit {code:<3} {near}")
EOF
