#!/usr/bin/env bash
# Capture real VXLAN frames from the Linux kernel's vxlan driver (Hand CNI-7
# setup, as in test/e2e.test.ts "interoperability") for the fuzz seed corpus.
#
#   sudo fuzz/seeds/capture.sh OUT.pcap
#
# Two namespaces joined by a veth: <prefix>-w3 runs the kernel's vxlan100
# as worker3 (underlay 198.18.1.13, VTEP MAC 0e:00:00:00:03:00) and sends
# pod traffic (ICMP, UDP, TCP SYN, IP options, TOS/ECN, DF, large) to worker2's
# pods 198.19.2.0/24; <prefix>-w2 (198.18.0.12) only captures. Addresses are
# in 198.18.0.0/15 only. Everything created is deleted on exit; the only
# processes ended are the tcpdump and senders this script started.
set -euo pipefail
out=${1:?usage: capture.sh OUT.pcap}
p="fzc$$"
w2="$p-w2"
w3="$p-w3"
tcpdump_pid=""

cleanup() {
  if [ -n "$tcpdump_pid" ]; then kill "$tcpdump_pid" 2>/dev/null || true; wait "$tcpdump_pid" 2>/dev/null || true; fi
  ip netns del "$w2" 2>/dev/null || true
  ip netns del "$w3" 2>/dev/null || true
}
trap cleanup EXIT

ip netns add "$w2"
ip netns add "$w3"
ip link add "${p}a" type veth peer name "${p}b"
ip link set "${p}a" netns "$w2"
ip link set "${p}b" netns "$w3"
x2() { ip netns exec "$w2" "$@"; }
x3() { ip netns exec "$w3" "$@"; }
x2 ip link set "${p}a" name eth0
x3 ip link set "${p}b" name eth0
for x in x2 x3; do $x ip link set lo up; $x ip link set eth0 up; done
x2 ip addr add 198.18.0.12/24 dev eth0
x3 ip addr add 198.18.1.13/24 dev eth0
x2 ip route add 198.18.1.13/32 dev eth0
x3 ip route add 198.18.0.12/32 dev eth0

# worker3: the kernel's vxlan with static neigh + fdb towards worker2.
x3 ip link add vxlan100 type vxlan id 100 dstport 4789 local 198.18.1.13 dev eth0 nolearning
x3 ip addr add 198.19.3.0/32 dev vxlan100
x3 ip link set dev vxlan100 address 0e:00:00:00:03:00
x3 ip link set dev vxlan100 up
x3 ip addr add 198.19.3.5/32 dev lo
x3 ip route add 198.19.2.0/24 via 198.19.2.0 dev vxlan100 onlink src 198.19.3.5
x3 ip neigh add 198.19.2.0 dev vxlan100 lladdr 0e:00:00:00:02:00
x3 bridge fdb add 0e:00:00:00:02:00 dev vxlan100 dst 198.18.0.12

x2 tcpdump -i eth0 -U -s 0 -w "$out" udp port 4789 2>/dev/null &
tcpdump_pid=$!
sleep 1

x3 ping -c 1 -W 0.2 198.19.2.7 >/dev/null || true                   # ICMP echo
x3 ping -c 1 -W 0.2 -s 1400 -M do 198.19.2.7 >/dev/null || true     # large, DF
x3 ping -c 1 -W 0.2 -s 0 -M dont 198.19.2.8 >/dev/null || true      # tiny, no DF
x3 ping -c 1 -W 0.2 -Q 0x02 198.19.2.9 >/dev/null || true           # ECT(0)
x3 ping -c 1 -W 0.2 -Q 0xb9 198.19.2.9 >/dev/null || true           # DSCP + ECT(1)
x3 ping -c 1 -W 0.2 -R 198.19.2.10 >/dev/null || true               # IP options (record route)
x3 ping -c 1 -W 0.2 -t 2 198.19.2.11 >/dev/null || true             # TTL 2
x3 python3 - <<'EOF' || true
import socket
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
u.bind(("198.19.3.5", 40000))
u.sendto(b"hello over the kernel's vxlan", ("198.19.2.7", 53))
u.sendto(b"\x00" * 300, ("198.19.2.12", 4789))
t = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
t.bind(("198.19.3.5", 0))
t.settimeout(0.3)
try:
    t.connect(("198.19.2.7", 80))  # a SYN with options
except OSError:
    pass
EOF
sleep 1
