# Shared by the benchmarks that run in a lab: a lab of their own with the guide's pods, the pods'
# addresses, and medians. Source it from the repository root.

# bench_lab PREFIX MANIFEST...: builds (unless SKIP_BUILD is set), brings up the lab PREFIX<pid>
# (removed again on exit), applies the manifests and waits until the guide's four pods are Ready.
# Sets `cilia`, `bin` and `lab`, and exports CILIA_LAB. PROFILE=debug uses the debug build.
bench_lab() {
  if [ "${PROFILE:-release}" = debug ]; then
    [ -n "${SKIP_BUILD:-}" ] || cargo build --bins -q
    bin=$PWD/target/debug
  else
    [ -n "${SKIP_BUILD:-}" ] || cargo build --release --bins -q
    bin=$PWD/target/release
  fi
  cilia=$bin/cilia
  export PATH=$bin:$PATH
  lab=$1$$
  export CILIA_LAB=$lab
  trap '$cilia lab down >/dev/null 2>&1 || true' EXIT
  shift
  $cilia lab up >/dev/null 2>&1
  local files=()
  for m in "$@"; do files+=(-f "$m"); done
  $cilia apply "${files[@]}" >/dev/null
  local ready=0
  for _ in $(seq 120); do
    ready=$($cilia get pod -o jsonpath='{range .items[*]}{.status.conditions[?(@.type=="Ready")].status}{"\n"}{end}' | grep -c True || true)
    [ "$ready" -ge 4 ] && return 0
    sleep 0.5
  done
  echo "pods did not become ready" >&2
  exit 1
}

# The address and name of the webpod on node $1.
pod_ip() { $cilia get pod -l app=webpod --field-selector spec.nodeName="$1" -o jsonpath='{.items[0].status.podIP}'; }
pod_name() { $cilia get pod -l app=webpod --field-selector spec.nodeName="$1" -o jsonpath='{.items[0].metadata.name}'; }

# The median of whitespace-separated numbers on stdin.
median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
