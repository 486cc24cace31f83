#!/usr/bin/env bash
# Debian packages the demo, the tests and the benchmarks use: iproute2 (ip,
# bridge), ping, tcpdump and tshark (captures and an independent dissector),
# iperf3 (throughput), python3 + scapy (traffic and crafted packets), wabt +
# clang + libFuzzer runtime (fuzzing the shipped WASM), nftables (the NAT
# tests assert the kernel's NAT tables stay empty), etcd-server (the cluster
# membership tests run a real etcd), podman + runc + the reference CNI
# plugins + busybox-static (the CNI plugin's tests run real containers),
# hping3 (SYN floods at a NodePort), traceroute (one hop per node), bird2 (BGP:
# the routing tests run BIRD on every node and the leaf), ethtool (checksum
# offload off where a test checks checksums on the wire). Run as root.
# --bench-peers: also the userspace VTEPs `npm run bench:e2e -- --peers`
# compares with (Open vSwitch, nebula, wireguard-go + wg, socat); the tests do
# not need them, and the bench reports a missing one as skipped.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
need=()
for pkg in iproute2 iputils-ping tcpdump tshark iperf3 python3 python3-scapy wabt clang libclang-rt-14-dev nftables etcd-server \
  podman runc containernetworking-plugins busybox-static hping3 traceroute bird2 ethtool \
  $([ "${1:-}" = --bench-peers ] && echo openvswitch-switch nebula wireguard-go wireguard-tools socat); do
  dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
  echo "installing: ${need[*]}"
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
