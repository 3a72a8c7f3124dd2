#!/usr/bin/env bash
# Checks that the README's set-up works on a fresh Debian machine: debootstraps a clean Debian of
# this machine's release into a folder, gives it what a fresh machine comes with (gcc, make and a
# rustup Rust toolchain), and runs inside it, on a clone of this repository's HEAD:
#
#   scripts/install-deps.sh                     (what `make deps` runs)
#   cargo build --release --bins                (what `make demo` builds)
#   cargo build --workspace --all-targets       (the test build)
#   scripts/install-deps.sh again               (must install nothing, without apt-get update)
#   command -v for every command the tests, benchmarks and the guide run
#
# Run it by hand, as root, before changing the build's dependencies or install-deps.sh's package
# list. It takes a while (debootstrap, then two full builds); it prints each stage's time and ends
# with PASS, or FAIL and the command that failed.
#
# Usage: scripts/check-fresh-install.sh [--minbase] [--keep] [--base-tarball FILE] [DIR]
#   DIR                where the fresh Debian goes: $CILIA_FRESH_ROOT, else /var/tmp/cilia-fresh-install.
#                      It is wiped first. Logs go to DIR.logs/ (kept).
#   --minbase          debootstrap --variant=minbase (only Essential packages and apt, like a container
#                      image) instead of the default variant; a stricter check.
#   --keep             keep DIR afterwards (it is always kept on FAIL, for a look inside; `chroot DIR`).
#   --base-tarball F   reuse a fresh base saved in F (made by an earlier run with the same option)
#                      instead of debootstrapping again; the base is only Debian plus gcc and make.
#
# Environment: CILIA_FRESH_ROOT (DIR), CILIA_FRESH_MIRROR (default http://deb.debian.org/debian),
# CILIA_FRESH_SUITE (default: VERSION_CODENAME of /etc/os-release), RUSTUP_HOME and CARGO_HOME (the
# host's Rust toolchain, default ~/.rustup and ~/.cargo).
#
# What it touches on the host: only DIR, DIR.logs and, if the option is given, the base tarball
# (and it installs debootstrap if that is missing).
# It runs in a private mount namespace, so its bind mounts are never seen outside it and vanish even
# if it is killed; a trap unmounts them (and stops anything left running in the chroot) on any exit.
# The chroot shares the host's network but never changes its configuration: /etc/resolv.conf and
# the host's locally added CA certificates (/usr/local/share/ca-certificates, for networks that
# inspect HTTPS; the chroot trusts them only once install-deps.sh installs ca-certificates) are
# copied into the chroot, and a policy-rc.d there keeps installed daemons (etcd, keepalived) from
# starting on the host's ports.
set -euo pipefail

usage() { sed -n '/^# Usage:/,/^# host.s Rust/p' "$0" | sed 's/^# \{0,1\}//'; }

# The Debian variant. The default variant (Priority required + important: apt, iproute2, procps,
# iputils-ping, less, ...) is the closer to a fresh cloud machine, whose images are built from that
# set plus cloud tools; --minbase is stricter (what a container image has).
orig_args=("$@")
variant=default
keep=0
base_tarball=""
root="${CILIA_FRESH_ROOT:-}"
while [ $# -gt 0 ]; do
  case "$1" in
    --minbase) variant=minbase ;;
    --keep) keep=1 ;;
    --base-tarball) base_tarball="${2:?--base-tarball needs a file}"; shift ;;
    --base-tarball=*) base_tarball="${1#*=}" ;;
    -h|--help) usage; exit 0 ;;
    -*) echo "unknown option $1" >&2; usage >&2; exit 2 ;;
    *) root="$1" ;;
  esac
  shift
done
root="${root:-/var/tmp/cilia-fresh-install}"

if [ "$(id -u)" -ne 0 ]; then
  echo "check-fresh-install: needs root (debootstrap, chroot, mounts)" >&2
  exit 2
fi

# Everything below runs in a private mount namespace (see the header).
if [ -z "${CILIA_FRESH_IN_NS:-}" ]; then
  export CILIA_FRESH_IN_NS=1
  exec unshare --mount --propagation private -- "$0" "${orig_args[@]}"
fi

repo="$(cd "$(dirname "$0")/.." && pwd)"
root="$(realpath -m "$root")"
case "$root" in
  /|/bin|/boot|/dev|/etc|/home|/lib*|/opt|/proc|/root|/run|/sbin|/srv|/sys|/tmp|/usr|/var|/var/tmp|"$repo")
    echo "check-fresh-install: refusing to use $root as the chroot" >&2; exit 2 ;;
esac
logs="$root.logs"
suite="${CILIA_FRESH_SUITE:-$(. /etc/os-release && echo "${VERSION_CODENAME:?no VERSION_CODENAME in /etc/os-release}")}"
mirror="${CILIA_FRESH_MIRROR:-http://deb.debian.org/debian}"
rustup_home="$(realpath "${RUSTUP_HOME:-$HOME/.rustup}")"
cargo_bin="$(realpath "${CARGO_HOME:-$HOME/.cargo}")/bin"
commit="$(git -C "$repo" rev-parse HEAD)"

say() { printf '== %s\n' "$*"; }

# --- stages: each one timed, its output shown and kept in $logs/NN-name.log --------------------------
stage_names=()
stage_secs=()
failed_stage=""
failed_cmd=""
stage_no=0
stage_pid=""
stage_start=0
stage() {  # stage NAME CMD...
  local name="$1"; shift
  stage_no=$((stage_no + 1))
  local log; log="$(printf '%s/%02d-%s.log' "$logs" "$stage_no" "$name")"
  say "stage $name: $*"
  failed_stage="$name"  # until it succeeds: an interrupted stage is the failing one
  failed_cmd="$*"
  stage_start=$SECONDS
  local status=0
  # In the background, as a process group of its own (set -m), so that a signal reaches the trap at
  # once and the clean-up can stop the whole stage.
  set -m
  { "$@" 2>&1 | tee "$log"; exit "${PIPESTATUS[0]}"; } &
  stage_pid=$!
  set +m
  wait "$stage_pid" || status=$?
  stage_pid=""
  local secs=$((SECONDS - stage_start))
  stage_names+=("$name")
  stage_secs+=("$secs")
  if [ "$status" -ne 0 ]; then
    say "stage $name FAILED after ${secs}s (exit $status); its log: $log"
    exit 1
  fi
  failed_stage=""
  failed_cmd=""
  say "stage $name done in ${secs}s"
}

# Runs a shell command in the chroot as a fresh root login would, with rustup's Rust on PATH and
# cargo's own home (registry cache) inside the chroot.
in_chroot() {
  chroot "$root" /usr/bin/env -i \
    HOME=/root USER=root LOGNAME=root LANG=C.UTF-8 TERM="${TERM:-dumb}" \
    PATH=/root/.cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    RUSTUP_HOME=/root/.rustup CARGO_HOME=/root/.cargo CARGO_TERM_COLOR=never \
    /bin/bash -c "cd /root/cilia 2>/dev/null || cd /root; set -e; $1"
}

# --- clean-up ----------------------------------------------------------------------------------------
mounts_under_root() {  # deepest first
  awk -v r="$root" '$5 == r || index($5, r "/") == 1 { print $5 }' /proc/self/mountinfo | sort -r
}
main_pid=$BASHPID
cleanup() {
  local status=$?
  [ "$BASHPID" = "$main_pid" ] || return 0  # only the script itself, never a subshell of it
  set +e
  # The stage that was running when a signal came, and anything still running with the chroot as
  # its root: all of it was started by this check.
  if [ -n "$stage_pid" ]; then
    say "stopping the running stage ($failed_stage)"
    stage_names+=("$failed_stage (stopped)")
    stage_secs+=($((SECONDS - stage_start)))
    kill -TERM -- -"$stage_pid" 2>/dev/null; sleep 2; kill -KILL -- -"$stage_pid" 2>/dev/null
  fi
  local p pids=()
  for p in /proc/[0-9]*; do
    [ "$(readlink "$p/root" 2>/dev/null)" = "$root" ] && pids+=("${p#/proc/}")
  done
  if [ ${#pids[@]} -gt 0 ]; then
    say "stopping processes left in the chroot: ${pids[*]}"
    kill "${pids[@]}" 2>/dev/null; sleep 1; kill -9 "${pids[@]}" 2>/dev/null
  fi
  local m
  for m in $(mounts_under_root); do
    umount "$m" 2>/dev/null || umount -l "$m"
  done
  if [ -n "$(mounts_under_root)" ]; then
    echo "check-fresh-install: still mounted under $root:" >&2; mounts_under_root >&2
  fi

  echo
  say "timings"
  local i total=0
  for i in "${!stage_names[@]}"; do
    printf '   %-22s %5ss  (%dm%02ds)\n' "${stage_names[$i]}" "${stage_secs[$i]}" \
      $((stage_secs[i] / 60)) $((stage_secs[i] % 60))
    total=$((total + stage_secs[i]))
  done
  printf '   %-22s %5ss  (%dm%02ds)\n' total "$total" $((total / 60)) $((total % 60))

  if [ "$status" -eq 0 ] && [ -z "$failed_stage" ]; then
    if [ "$keep" -eq 0 ] && [ -z "$(mounts_under_root)" ]; then
      rm -rf --one-file-system "$root"
      say "removed $root"
    else
      say "kept $root"
    fi
    say "PASS: a fresh Debian $suite ($variant variant) installs, builds and finds every command (commit ${commit:0:12}); logs in $logs"
  else
    say "kept $root for a look inside (chroot $root /bin/bash)"
    if [ -n "$failed_stage" ]; then
      say "FAIL: stage $failed_stage: $failed_cmd"
    else
      say "FAIL: exit $status before or between stages (see above)"
    fi
    say "logs in $logs"
    [ "$status" -ne 0 ] || status=1
  fi
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP

# --- the steps -----------------------------------------------------------------------------------------
fresh_base() {
  if [ -n "$(mounts_under_root)" ]; then
    echo "something is mounted under $root; not wiping it" >&2; return 1
  fi
  rm -rf --one-file-system "$root"
  mkdir -p "$root"
  if [ -n "$base_tarball" ] && [ -f "$base_tarball" ]; then
    echo "unpacking the saved base $base_tarball"
    tar -C "$root" --numeric-owner -xpf "$base_tarball"
    return
  fi
  if ! command -v debootstrap >/dev/null; then
    echo "installing debootstrap"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends debootstrap
  fi
  local args=()
  [ "$variant" = minbase ] && args+=(--variant=minbase)
  debootstrap "${args[@]}" "$suite" "$root" "$mirror"
}

# What a fresh machine has beyond debootstrap: the release's updates and security suites in
# sources.list, and gcc and make (installed without recommends, so nothing else comes along).
base_setup() {
  cat >"$root/etc/apt/sources.list" <<EOF
deb $mirror $suite main
deb $mirror $suite-updates main
deb http://deb.debian.org/debian-security $suite-security main
EOF
  cp -L /etc/resolv.conf "$root/etc/resolv.conf"
  in_chroot 'export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends gcc make
    apt-get clean'
  if [ -n "$base_tarball" ] && [ ! -f "$base_tarball" ]; then
    echo "saving the base to $base_tarball"
    # Without what is mounted (the host's toolchain is on the same file system as the chroot).
    local excludes=() m
    for m in $(mounts_under_root); do excludes+=(--exclude=".${m#"$root"}/*"); done
    tar -C "$root" --numeric-owner --one-file-system "${excludes[@]}" -cpf "$base_tarball" .
  fi
}

bind() {  # bind SRC DST [ro]
  mkdir -p "$2"
  mount --bind "$1" "$2"
  [ "${3:-}" != ro ] || mount -o remount,bind,ro "$2"
}

mount_all() {
  mount -t proc proc "$root/proc"
  bind /sys "$root/sys" ro
  if mountpoint -q /sys/fs/bpf; then bind /sys/fs/bpf "$root/sys/fs/bpf" ro; fi
  bind /dev "$root/dev"
  bind /dev/pts "$root/dev/pts"
  # The host's Rust toolchain, read-only: rustup's proxies (cargo, rustc, ...) and its toolchains.
  bind "$rustup_home" "$root/root/.rustup" ro
  bind "$cargo_bin" "$root/root/.cargo/bin" ro
  # Daemons that packages install must not start: the chroot shares the host's network.
  printf '#!/bin/sh\nexit 101\n' >"$root/usr/sbin/policy-rc.d"
  chmod 755 "$root/usr/sbin/policy-rc.d"
  cp -L /etc/resolv.conf "$root/etc/resolv.conf"
  if compgen -G '/usr/local/share/ca-certificates/*.crt' >/dev/null; then
    mkdir -p "$root/usr/local/share/ca-certificates"
    cp -L /usr/local/share/ca-certificates/*.crt "$root/usr/local/share/ca-certificates/"
    echo "copied the host's local CA certificates: $(cd /usr/local/share/ca-certificates && echo *.crt)"
  fi
  findmnt -R -o TARGET,SOURCE,FSTYPE,OPTIONS "$root" || mounts_under_root
}

clone_repo() {
  git clone --quiet --no-hardlinks "$repo" "$root/root/cilia"
  git -C "$root/root/cilia" checkout --quiet --detach "$commit"
  git -C "$root/root/cilia" log -1 --format='%h %s'
  if ! git -C "$repo" diff --quiet HEAD -- 2>/dev/null; then
    echo "note: the working tree has uncommitted changes; they are not part of this check"
  fi
}

rust_toolchain() {
  in_chroot 'command -v cargo; rustc --version; cargo --version'
}

# Every external command that the build, the tests (crates/*/tests), the lab (crates/lab,
# crates/podruntime), the guide (crates/cli/src/guide) and the benchmarks (scripts/bench) run, and
# what install-deps.sh installs for use by hand (etcdctl, arping, keepalived).
commands=(
  make cc clang protoc cargo
  ip ping tcpdump ethtool curl iperf3 wrk nft iptables iptables-restore conntrack bc python3
  etcd etcdctl arping keepalived
  bash sh ps kill sysctl awk sed grep sort uniq head tail cut tr seq sleep timeout date cat
  mktemp touch env xargs mount mountpoint setsid nsenter
)
check_commands() {
  in_chroot "missing=0
    for c in ${commands[*]}; do
      if p=\$(type -P \"\$c\"); then printf '  %-17s %s\n' \"\$c\" \"\$p\"
      else printf '  %-17s MISSING\n' \"\$c\"; missing=1; fi
    done
    exit \$missing"
}

mkdir -p "$logs"
rm -f "$logs"/*.log
say "fresh-install check of $repo at ${commit:0:12}"
say "Debian $suite ($variant variant) from $mirror into $root; logs in $logs"
say "host Rust toolchain (read-only): $rustup_home and $cargo_bin"

stage debootstrap   fresh_base
stage mounts        mount_all
stage base          base_setup
stage clone         clone_repo
stage rust          rust_toolchain
stage install-deps  in_chroot './scripts/install-deps.sh'
stage build-release in_chroot 'cargo build --release --bins'
stage build-tests   in_chroot 'cargo build --workspace --all-targets'
stage deps-again    in_chroot 'out=$(./scripts/install-deps.sh 2>&1); printf "%s\n" "$out"
                               if [ -n "$out" ]; then echo "expected no output: nothing to install"; exit 1; fi'
stage commands      check_commands
