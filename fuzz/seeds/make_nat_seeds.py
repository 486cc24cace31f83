#!/usr/bin/python3
"""Write seeds for the `nat` fuzz target (fuzz/corpus/nat/) in its input
format (fuzz/harness.c, nat_run): a control byte, then up to 6 steps
separated by b"\\xffPK\\xff", each op, clock, body. The node is worker2 with
NAT on (masquerade, a ClusterIP with a remote and a local backend, a
NodePort, a UDP service with a remote and a directly routed backend, a
service without backends); the sequences are the Hand CNI-3/4/5 flows and
their edges: SYN to the ClusterIP and its answers, masqueraded UDP and ICMP
echo, NodePort from outside, ICMP errors about translated packets, our own
errors about translated packets, a full table, no free port, expiry.

    /usr/bin/python3 fuzz/seeds/make_nat_seeds.py   (Debian python3-scapy)
"""
import hashlib
import os

from scapy.all import ICMP, IP, TCP, UDP, Raw  # type: ignore

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "corpus", "nat")
SEP = b"\xffPK\xff"

POD, POD2 = "198.19.2.5", "198.19.2.9"
LOCAL_BE, REMOTE_BE = "198.19.2.7", "198.19.3.7"
OUTSIDE, ROUTER = "198.18.2.100", "198.18.2.1"
NODE, SNAT = "198.18.0.12", "198.19.2.1"
CLUSTER, EMPTY = "198.18.250.10", "198.18.250.11"

POD_SIDE, VXLAN, ANSWER, ERROR = 0, 1, 2, 3
# NAT_ERRS in harness.c: 0 net unreachable, 1 host, 2 port, 3 frag needed,
# 4 time exceeded, 5 parameter problem, 6 admin prohibited, 7 source quench.
UNREACH_PORT, FRAG_NEEDED, TIME_EXCEEDED = 2, 3, 4
SYN, SYNACK, ACK, FIN, RST = 0x02, 0x12, 0x10, 0x11, 0x04


def step(kind: int, body: bytes = b"", ref: int = 0, advance: int = 0, expire: bool = False, copies: int = 1) -> bytes:
    clock = advance | (8 if expire else 0) | ((copies - 1) << 4)
    return bytes([kind | (ref << 2), clock]) + body


def seq(*steps: bytes, ctrl: int = 0) -> bytes:
    return bytes([ctrl]) + SEP.join(steps)


def tcp(src, dst, sport, dport, flags, size=16, ttl=64, df=False) -> bytes:
    return bytes(IP(src=src, dst=dst, ttl=ttl, flags="DF" if df else 0) / TCP(sport=sport, dport=dport, flags=flags, seq=1000) / Raw(bytes(i & 255 for i in range(size))))


def udp(src, dst, sport, dport, size=24, zero=False) -> bytes:
    p = IP(src=src, dst=dst, ttl=64) / UDP(sport=sport, dport=dport) / Raw(bytes(i & 255 for i in range(size)))
    if zero:
        p[UDP].chksum = 0
    return bytes(p)


def echo(src, dst, ident, size=32) -> bytes:
    return bytes(IP(src=src, dst=dst, ttl=64) / ICMP(type=8, id=ident, seq=1) / Raw(bytes(i & 255 for i in range(size))))


def write(name: str, data: bytes) -> None:
    os.makedirs(OUT, exist_ok=True)
    h = hashlib.sha1(data).hexdigest()[:10]
    with open(os.path.join(OUT, f"{name}-{h}"), "wb") as f:
        f.write(data)


def main() -> None:
    # Hand CNI-4: a pod to the ClusterIP; the backend (remote or local, drawn
    # per flow) answers, the pod ACKs the answer, an error about the SYN.
    write("clusterip-syn-answer-ack-error", seq(
        step(POD_SIDE, tcp(POD, CLUSTER, 30000, 80, SYN)),
        step(ANSWER, bytes([SYNACK]), ref=0),
        step(ANSWER, bytes([ACK]), ref=1),
        step(ERROR, bytes([UNREACH_PORT, 0]), ref=0),
        step(ANSWER, bytes([FIN]), ref=1, advance=2),
        step(ANSWER, bytes([RST]), ref=0)))
    # Backends are drawn from a seeded random sequence, reset per input: the
    # fourth new service flow of an input goes to the remote backend (DNAT
    # only, its answers come back through VXLAN from worker3).
    write("clusterip-remote-backend", seq(
        step(POD_SIDE, tcp(POD, CLUSTER, 30200, 80, SYN), copies=3),
        step(POD_SIDE, tcp(POD, CLUSTER, 30300, 80, SYN)),
        step(ANSWER, bytes([SYNACK]), ref=1),
        step(ANSWER, bytes([ACK]), ref=2),
        step(ERROR, bytes([UNREACH_PORT, 0]), ref=1),
        step(ANSWER, bytes([ACK | 0x08]), ref=1, advance=1)))
    # Two copies: the second flow of the batch may draw the other backend.
    write("clusterip-syn-copies", seq(
        step(POD_SIDE, tcp(POD, CLUSTER, 30100, 80, SYN), copies=4),
        step(ANSWER, bytes([SYNACK]), ref=0),
        step(ERROR, bytes([TIME_EXCEEDED, 12]), ref=0)))
    # Hairpin: a backend reaching its own service.
    write("hairpin-syn-answer", seq(
        step(POD_SIDE, tcp(LOCAL_BE, CLUSTER, 31000, 80, SYN), copies=4),
        step(ANSWER, bytes([SYNACK]), ref=0),
        step(ANSWER, bytes([ACK]), ref=1),
        step(ERROR, bytes([UNREACH_PORT, 8]), ref=0)))
    # Hand CNI-3: masquerade; the answer; an error from a router on the way;
    # the flow expires (30 s, reaped on sight) and the late answer has no flow.
    write("masq-udp-answer-error-expiry", seq(
        step(POD_SIDE, udp(POD, OUTSIDE, 5000, 53)),
        step(ANSWER, b"", ref=0),
        step(ERROR, bytes([UNREACH_PORT, 0]), ref=0),
        step(ANSWER, b"", ref=0, advance=5),
        step(ANSWER, b"", ref=0, advance=7),
        step(ANSWER, b"", ref=0, advance=3, expire=True)))
    write("masq-udp-zero-checksum", seq(
        step(POD_SIDE, udp(POD, OUTSIDE, 5001, 53, zero=True), copies=2),
        step(ANSWER, b"", ref=0),
        step(ERROR, bytes([FRAG_NEEDED, 20]), ref=0)))
    write("masq-tcp-answer", seq(
        step(POD_SIDE, tcp(POD, OUTSIDE, 40000, 80, SYN)),
        step(ANSWER, bytes([SYNACK]), ref=0),
        step(ANSWER, bytes([ACK]), ref=1),
        step(ANSWER, bytes([FIN | 0x08]), ref=2, advance=3, expire=True),
        step(ERROR, bytes([TIME_EXCEEDED, 0]), ref=2)))
    write("masq-icmp-echo-answer-error", seq(
        step(POD_SIDE, echo(POD, OUTSIDE, 0x1234), copies=2),
        step(ANSWER, b"", ref=0),
        step(ERROR, bytes([TIME_EXCEEDED, 0]), ref=0),
        step(ERROR, bytes([UNREACH_PORT, 4]), ref=1)))
    # Hand CNI-5: NodePort from outside; the answer comes back through VXLAN
    # (remote backend) or the pod side (local), leaves from the node.
    write("nodeport-syn-answer-error", seq(
        step(POD_SIDE, tcp(OUTSIDE, NODE, 5555, 30080, SYN), copies=2),
        step(ANSWER, bytes([SYNACK]), ref=0),
        step(ANSWER, bytes([ACK]), ref=1),
        step(ERROR, bytes([UNREACH_PORT, 0]), ref=0),
        step(ERROR, bytes([UNREACH_PORT, 0]), ref=1)))
    # UDP service: remote backend over VXLAN, the other by plain routing.
    write("udp-service-answer-error", seq(
        step(POD_SIDE, udp(POD, CLUSTER, 7000, 53), copies=4),
        step(ANSWER, b"", ref=0),
        step(ERROR, bytes([UNREACH_PORT, 0]), ref=0),
        step(POD_SIDE, udp(POD2, CLUSTER, 7001, 53, zero=True), copies=4),
        step(ANSWER, b"", ref=3)))
    # Our own errors about translated packets: too big (ClusterIP, NodePort
    # from outside: leaves through the node's stack), TTL exceeded.
    write("own-errors-about-translated", seq(
        step(POD_SIDE, tcp(POD, CLUSTER, 33000, 80, SYN, size=1460, df=True), copies=2),
        step(POD_SIDE, tcp(OUTSIDE, NODE, 5556, 30080, SYN, size=1460, df=True)),
        step(POD_SIDE, tcp(POD, CLUSTER, 33001, 80, SYN, ttl=1)),
        step(POD_SIDE, tcp(POD, OUTSIDE, 33002, 80, SYN, ttl=1)),
        step(POD_SIDE, tcp(POD, EMPTY, 33003, 80, SYN))))
    # A full table (16 flows), then no free port (12 ports to one destination).
    write("table-full", seq(*[step(POD_SIDE, tcp(POD, f"198.18.2.{100 + i}", 41000 + 8 * i, 80, SYN), copies=4) for i in range(5)],
                            step(ANSWER, bytes([SYNACK]), ref=0)))
    write("no-free-port", seq(*[step(POD_SIDE, udp(f"198.19.2.{10 + i}", OUTSIDE, 9000, 53), copies=4) for i in range(4)],
                              step(ANSWER, b"", ref=0, advance=4, expire=True)))
    # Steered packets without a flow, a later fragment, openers that cannot open.
    write("steered-no-flow", seq(
        step(POD_SIDE, tcp(OUTSIDE, NODE, 80, 61005, ACK)),
        step(POD_SIDE, udp(OUTSIDE, SNAT, 80, 61005)),
        step(POD_SIDE, bytes(IP(src=OUTSIDE, dst=NODE, proto=17, frag=185, ttl=64) / Raw(bytes(64)))),
        step(POD_SIDE, tcp(POD, CLUSTER, 34000, 80, SYNACK)),
        step(POD_SIDE, tcp(POD, OUTSIDE, 34001, 80, RST)),
        step(POD_SIDE, bytes(IP(src=POD, dst=CLUSTER, proto=6, ttl=64) / Raw(b"\x75\x30\x00\x50")))))
    # Through VXLAN from worker3: an untracked packet, an error about nothing.
    write("vxlan-untracked", seq(
        step(VXLAN, udp(REMOTE_BE, POD, 8080, 30000)),
        step(POD_SIDE, udp(POD, CLUSTER, 7002, 53)),
        step(VXLAN, udp("198.19.3.8", POD, 5353, 7002)),
        step(ERROR, bytes([UNREACH_PORT, 0]), ref=2)))
    # Slot placements: flush with the slot's end, least headroom.
    for ctrl in (1, 2):
        write(f"clusterip-placement{ctrl}", seq(
            step(POD_SIDE, tcp(POD, CLUSTER, 35000, 80, SYN), copies=2),
            step(ANSWER, bytes([SYNACK]), ref=0),
            step(ERROR, bytes([UNREACH_PORT, 0]), ref=0), ctrl=ctrl))


if __name__ == "__main__":
    main()
