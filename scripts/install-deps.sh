#!/usr/bin/env bash
# Installs the system packages cilia builds and runs with, if any is missing (Debian, as root).
# Idempotent: when everything is installed it only asks dpkg (no apt-get update) and prints nothing.
# Rust itself comes from rustup. scripts/check-fresh-install.sh checks this list on a fresh Debian.
set -euo pipefail

packages=(
  # Building
  ca-certificates   # cargo's HTTPS downloads from crates.io
  gcc               # cargo's linker; ring's build script compiles C
  libc6-dev         # crt1.o, libc and the Linux headers the binaries and bpf/*.c need
  make              # the Makefile
  clang             # compiles the eBPF datapath (bpf/*.c)
  libbpf-dev        # bpf_helpers.h for the eBPF programs
  protobuf-compiler # protoc, for etcd-client's gRPC code
  libprotobuf-dev   # google/protobuf/*.proto, which etcd-client's protos import
  # Running the lab, the guide and the tests
  etcd-server       # etcd, the datastore the lab and the store tests run
  etcd-client       # etcdctl, for inspecting the datastore by hand
  iproute2          # ip: the lab's namespaces, links and routes; every kernel test
  iputils-ping      # ping inside lab hosts and pods (guide, tests, tunnel benchmark)
  tcpdump           # packet capture in the guide's steps and the tests
  ethtool           # device offloads (GRO) checked by the tunnel tests
  curl              # HTTP requests inside lab hosts and pods (guide, tests)
  arping            # ARP probes from the router (L2 announcements)
  dnsmasq-base      # the lab router's DNS server (dnsmasq without a system service of its own)
  bind9-dnsutils    # dig inside pods and lab hosts (cluster DNS tests, the guide)
  net-tools         # arp -a on the router (the guide; the DNS tests check that it does not hang)
  procps            # ps, kill, sysctl: the pod runtime, the tests and the benchmarks
  python3           # address arithmetic in benchmarks; a UDP client in the service tests
  # Benchmarks (scripts/bench)
  iperf3            # throughput between pods
  wrk               # request and connection rates
  nftables          # nft: kube-proxy's nftables-mode baseline, masquerading in lab-services.sh
  iptables          # iptables-restore: kube-proxy's iptables-mode baseline
  conntrack         # flushes connection tracking between benchmark runs
  bc                # ratios in the benchmark scripts
  keepalived        # the VRRP baseline a benchmark compares against
  dnsperf           # DNS query rates and latencies (scripts/bench/dns.sh)
)

# One dpkg query for all of them; a package dpkg has never heard of is missing too.
installed="$(dpkg-query -W -f='${Package} ${db:Status-Status}\n' "${packages[@]}" 2>/dev/null || true)"
missing=()
for p in "${packages[@]}"; do
  grep -qx "$p installed" <<<"$installed" || missing+=("$p")
done

if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# The BPF filesystem and cgroup2 are needed by the datapath; both are normally mounted.
mountpoint -q /sys/fs/bpf || mount -t bpf bpf /sys/fs/bpf
