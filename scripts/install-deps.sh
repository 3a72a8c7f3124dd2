#!/usr/bin/env bash
# Installs the system packages cilia builds and runs with, if any is missing (Debian, as root).
set -euo pipefail

packages=(
  clang            # compiles the eBPF datapath (bpf/*.c)
  libbpf-dev       # bpf_helpers.h for the eBPF programs
  protobuf-compiler # protoc, for etcd-client's gRPC code
  libprotobuf-dev  # google/protobuf/*.proto, which etcd-client's protos import
  etcd-server      # the datastore the lab runs
  etcd-client      # etcdctl, for inspecting the datastore by hand
  iproute2         # ip, for the lab's namespaces and links
  iputils-ping     # ping inside lab hosts and pods
  tcpdump          # packet capture in the guide's steps
  ethtool          # device offloads (GRO) checked by the tunnel tests
  curl             # HTTP requests inside lab hosts and pods
  arping           # ARP probes from the router (L2 announcements)
  procps           # ps/pkill used by cleanup checks
  iperf3           # throughput benchmarks between pods
  wrk              # request-rate benchmarks
  nftables         # kube-proxy nftables-mode baseline in benchmarks
  iptables         # kube-proxy iptables-mode baseline in benchmarks
  conntrack        # flushes connection tracking between benchmark runs
  bc               # ratios in the benchmark scripts
  python3          # address arithmetic in benchmarks; a UDP client in the service tests
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# The BPF filesystem and cgroup2 are needed by the datapath; both are normally mounted.
mountpoint -q /sys/fs/bpf || mount -t bpf bpf /sys/fs/bpf
