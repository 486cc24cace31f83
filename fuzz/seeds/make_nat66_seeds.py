#!/usr/bin/python3
"""Seeds for the `nat66` fuzz target (fuzz/seeds/nat66/) in its input format
(fuzz/harness.c, nat66_run): a control byte, then up to 6 steps separated by
b"\\xffPK\\xff", each op, clock, body, with IPv6 packets. The node is worker2
with NAT66 on (harness.c nat66_worker2): masquerade to NODE6, a TCP
ClusterIP on a remote backend (VXLAN) and one on worker1's (protocol 41), a
UDP ClusterIP on a local backend (hairpin through SNAT6), a NodePort on
NODE6 with a remote and a local backend, a UDP NodePort whose backend is
outside the cluster, a service without backends. The sequences: each flow
kind answered and erred about, our own errors about translated packets,
full flow and name tables, no free port, expiry, the refusals around them.
Plain Python, packets built by hand (RFC 8200, 4443), no scapy needed.

    python3 fuzz/seeds/make_nat66_seeds.py   (owns fuzz/seeds/nat66/)"""
import hashlib
import ipaddress
import os
import shutil
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "nat66")
SEP = b"\xffPK\xff"

# harness.c nat66 addresses.
NODE6, SNAT6 = "2001:2:ff::2", "2001:2:0:2::fffe"
CLUSTER6, EMPTY6 = "2001:2:0:250::10", "2001:2:0:250::11"
LOCAL_BE6, REMOTE_BE6, SIT_BE6, EXT_BE6 = "2001:2:0:2::7", "2001:2:0:3::7", "2001:2:0:1::7", "2001:2:ff::53"
POD, POD2, W3POD = "2001:2:0:2::5", "2001:2:0:2::9", "2001:2:0:3::5"
OUTSIDE, OUTSIDE2 = "2001:2:ff::100", "2001:2:ff::101"

POD_SIDE, DECAP, ANSWER, ERROR = 0, 1, 2, 3
# NAT66_ERRS in harness.c: 0 no route, 1 admin prohibited, 2 address
# unreachable, 3 port unreachable, 4 policy, 5 packet too big, 6 hop limit
# exceeded, 7 parameter problem.
NO_ROUTE, PORT_UNREACH, TOO_BIG, HOP_EXCEEDED, PARAM = 0, 3, 5, 6, 7
SYN, SYNACK, ACK, FIN, RST, PSHACK = 0x02, 0x12, 0x10, 0x11, 0x04, 0x18
# NAT_ADVANCE indices: 0, 1, 11, 31, 61, 121, 601, 432001 s.
S0, S1, S11, S31, S61, S121, S601, S5D = range(8)


def a6(s: str) -> bytes:
    return ipaddress.IPv6Address(s).packed


def csum(b: bytes, s: int = 0) -> int:
    if len(b) % 2:
        b += b"\0"
    s += sum(struct.unpack(f"!{len(b) // 2}H", b))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def pseudo6(src: str, dst: str, nxt: int, n: int) -> int:
    return sum(struct.unpack("!20H", a6(src) + a6(dst) + struct.pack("!IxxxB", n, nxt)))


def ipv6(src: str, dst: str, nxt: int, payload: bytes, hlim: int = 64) -> bytes:
    return struct.pack("!IHBB", 6 << 28, len(payload), nxt, hlim) + a6(src) + a6(dst) + payload


def data(n: int) -> bytes:
    return bytes((i * 13 + 5) & 255 for i in range(n))


def udp(src, dst, sport, dport, n=24, zero=False, hlim=64) -> bytes:
    u = struct.pack("!HHHH", sport, dport, 8 + n, 0) + data(n)
    c = 0 if zero else (csum(u, pseudo6(src, dst, 17, len(u))) or 0xFFFF)
    return ipv6(src, dst, 17, u[:6] + struct.pack("!H", c) + u[8:], hlim)


def tcp(src, dst, sport, dport, flags, n=16, hlim=64) -> bytes:
    t = struct.pack("!HHIIBBHHH", sport, dport, 1000, 0, 5 << 4, flags, 65535, 0, 0) + data(n)
    c = csum(t, pseudo6(src, dst, 6, len(t)))
    return ipv6(src, dst, 6, t[:16] + struct.pack("!H", c) + t[18:], hlim)


def icmp6(src, dst, typ, code, rest, body, hlim=64) -> bytes:
    m = struct.pack("!BBHI", typ, code, 0, rest) + body
    return ipv6(src, dst, 58, m[:2] + struct.pack("!H", csum(m, pseudo6(src, dst, 58, len(m)))) + m[4:], hlim)


def echo(src, dst, ident, n=32, typ=128) -> bytes:
    return icmp6(src, dst, typ, 0, (ident << 16) | 1, data(n))


def step(kind: int, body: bytes = b"", ref: int = 0, advance: int = S0, expire: bool = False, copies: int = 1, sit: bool = False) -> bytes:
    clock = advance | (8 if expire else 0) | ((copies - 1) << 4)
    return bytes([kind | (ref << 2) | (0x20 if sit else 0), clock]) + body


def answer(ref: int = 0, flags: int = ACK, **kw) -> bytes:
    return step(ANSWER, bytes([flags]), ref, **kw)


def error(ref: int = 0, which: int = PORT_UNREACH, extra: int = 0, **kw) -> bytes:
    return step(ERROR, bytes([which, extra]), ref, **kw)


def seq(*steps: bytes, ctrl: int = 0) -> bytes:
    assert len(steps) <= 6 and not any(SEP in s for s in steps)
    return bytes([ctrl]) + SEP.join(steps)


def write(name: str, blob: bytes) -> None:
    with open(os.path.join(OUT, f"{name}-{hashlib.sha1(blob).hexdigest()[:10]}"), "wb") as f:
        f.write(blob)


def seeds() -> None:
    # Masquerade to NODE6: UDP, TCP, echo, answered, erred about, expired.
    write("masq-udp", seq(step(POD_SIDE, udp(POD, OUTSIDE, 40000, 53)), answer(), error(0, PORT_UNREACH), answer(0, advance=S1)))
    write("masq-udp-zero-checksum", seq(step(POD_SIDE, udp(POD, OUTSIDE, 40001, 53, zero=True)), answer(), error(0, NO_ROUTE, 40)))
    write("masq-tcp", seq(step(POD_SIDE, tcp(POD, OUTSIDE, 45000, 443, SYN)), answer(0, SYNACK), step(POD_SIDE, tcp(POD, OUTSIDE, 45000, 443, ACK)),
                          answer(0, PSHACK), step(POD_SIDE, tcp(POD, OUTSIDE, 45000, 443, FIN)), answer(0, FIN)))
    write("masq-echo", seq(step(POD_SIDE, echo(POD, OUTSIDE, 0x4242)), answer(), error(0, HOP_EXCEEDED), error(0, PARAM, 200)))
    write("masq-echo-zero", seq(step(POD_SIDE, icmp6(POD, OUTSIDE, 128, 0, 0, bytes(32))), answer()))
    write("masq-expired", seq(step(POD_SIDE, udp(POD, OUTSIDE, 40002, 53)), answer(0, advance=S61, expire=True), answer(0, advance=S121)))
    write("masq-too-big", seq(step(POD_SIDE, udp(POD, OUTSIDE, 40003, 53, n=1500 - 48 + 1))))
    write("masq-copies", seq(step(POD_SIDE, udp(POD, OUTSIDE, 40010, 53), copies=4), answer(0, copies=4), error(0, PORT_UNREACH, copies=2)))
    # ClusterIP TCP on worker3 (DNAT over VXLAN), its answers and errors, a later expiry.
    write("clusterip-remote", seq(step(POD_SIDE, tcp(POD, CLUSTER6, 45001, 80, SYN)), answer(0, SYNACK), step(POD_SIDE, tcp(POD, CLUSTER6, 45001, 80, ACK)),
                                  error(0, PORT_UNREACH), error(0, TOO_BIG, 60), answer(0, RST, advance=S5D, expire=True)))
    write("clusterip-remote-too-big", seq(step(POD_SIDE, tcp(POD, CLUSTER6, 45002, 80, SYN, n=1500 - 50 - 60 + 1))))
    write("clusterip-remote-first-synack", seq(step(POD_SIDE, tcp(POD, CLUSTER6, 45003, 80, SYNACK)), step(POD_SIDE, tcp(POD, CLUSTER6, 45003, 80, ACK)), answer(1)))
    write("clusterip-sit", seq(step(POD_SIDE, tcp(POD, CLUSTER6, 45004, 443, SYN)), answer(0, SYNACK), error(0, NO_ROUTE), answer(0, FIN)))
    # Hairpin: UDP ClusterIP on this node, through SNAT6.
    write("hairpin-udp", seq(step(POD_SIDE, udp(POD, CLUSTER6, 41000, 53, hlim=63)), answer(), error(0, PORT_UNREACH), step(POD_SIDE, udp(POD2, CLUSTER6, 41000, 53)),
                             answer(3)))
    write("hairpin-udp-hop-255", seq(step(POD_SIDE, udp(POD, CLUSTER6, 41001, 53, hlim=255)), answer()))
    # NodePort on NODE6 from outside: our hop; a remote or a local backend.
    write("nodeport-tcp", seq(step(POD_SIDE, tcp(OUTSIDE, NODE6, 50000, 30080, SYN, hlim=10)), answer(0, SYNACK), error(0, PORT_UNREACH),
                              step(POD_SIDE, tcp(OUTSIDE2, NODE6, 50001, 30080, SYN), copies=4), answer(3, SYNACK, copies=4)))
    # The backend draws of a fresh input go local, local, local, remote: the
    # fourth NodePort flow lands on worker3 (its answers come back over VXLAN).
    three = step(POD_SIDE, tcp(OUTSIDE, NODE6, 50010, 30080, SYN), copies=3)
    write("nodeport-remote", seq(three, step(POD_SIDE, tcp(OUTSIDE2, NODE6, 50020, 30080, SYN, hlim=10)), answer(1, SYNACK), error(1, PORT_UNREACH),
                                 error(1, TOO_BIG, 20), answer(1, FIN, advance=S11)))
    write("nodeport-remote-hop-limit-1", seq(three, step(POD_SIDE, tcp(OUTSIDE2, NODE6, 50021, 30080, SYN, hlim=1))))
    write("nodeport-remote-too-big", seq(three, step(POD_SIDE, tcp(OUTSIDE2, NODE6, 50022, 30080, SYN, n=1500 - 50 - 60 + 1))))
    write("nodeport-hop-limit-1", seq(step(POD_SIDE, tcp(OUTSIDE, NODE6, 50002, 30080, SYN, hlim=1))))
    write("nodeport-too-big", seq(step(POD_SIDE, tcp(OUTSIDE, NODE6, 50003, 30080, SYN, n=1500 - 50 - 60 + 1), copies=2)))
    write("nodeport-from-pod", seq(step(POD_SIDE, tcp(POD, NODE6, 50004, 30080, SYN)), answer(0, SYNACK)))
    write("nodeport-outside-backend", seq(step(POD_SIDE, udp(OUTSIDE, NODE6, 50005, 30053, hlim=9)), answer(), error(0, PORT_UNREACH)))
    write("nodeport-outside-backend-hop-1", seq(step(POD_SIDE, udp(OUTSIDE, NODE6, 50006, 30053, hlim=1))))
    # A service without backends, and what is not translated.
    write("empty-service", seq(step(POD_SIDE, tcp(POD, EMPTY6, 45005, 80, SYN)), step(POD_SIDE, tcp(OUTSIDE, EMPTY6, 45005, 80, SYN))))
    write("to-node-no-flow", seq(step(POD_SIDE, udp(OUTSIDE, NODE6, 53, 12345)), step(POD_SIDE, echo(OUTSIDE, NODE6, 7)), step(POD_SIDE, udp(OUTSIDE, SNAT6, 53, 61000))))
    hbh = struct.pack("!BB6x", 6, 0) + tcp(POD, CLUSTER6, 45006, 80, SYN)[40:]
    write("extension-header", seq(step(POD_SIDE, ipv6(POD, CLUSTER6, 0, hbh)), step(POD_SIDE, ipv6(POD, OUTSIDE, 0, hbh))))
    write("truncated-tcp-to-clusterip", seq(step(POD_SIDE, ipv6(POD, CLUSTER6, 6, struct.pack("!HH", 45007, 80))), ctrl=1))
    write("truncated-udp-masq", seq(step(POD_SIDE, ipv6(POD, OUTSIDE, 17, struct.pack("!HHH", 40004, 53, 6))), ctrl=1))
    write("pod-to-pod", seq(step(POD_SIDE, udp(POD, W3POD, 40005, 53)), answer(), step(POD_SIDE, udp(POD, POD2, 40005, 53))))
    write("decap-no-flow", seq(step(DECAP, udp(W3POD, POD, 53, 40006)), step(DECAP, udp(REMOTE_BE6, OUTSIDE, 8080, 50000)),
                               step(DECAP, udp(SIT_BE6, POD, 8443, 45000), sit=True)))
    write("multicast-dst", seq(step(POD_SIDE, udp(POD, "ff02::1", 40007, 53))))
    # Full tables and no free port, within one input.
    write("no-free-port", seq(*[step(POD_SIDE, udp(POD, OUTSIDE, 40100 + 4 * i, 53), copies=4) for i in range(4)]))
    write("flow-table-full", seq(*[step(POD_SIDE, tcp(POD, f"2001:2:ff::{0x200 + i:x}", 45100 + 4 * i, 443, SYN), copies=4) for i in range(5)],
                                 answer(0, SYNACK)))
    write("names-full", seq(*[step(POD_SIDE, udp(f"2001:2:0:2::{0x10 + i:x}", f"2001:2:ff::{0x300 + i:x}", 40200, 53)) for i in range(6)]))
    write("names-full-then-expiry", seq(*[step(POD_SIDE, udp(f"2001:2:0:2::{0x10 + i:x}", f"2001:2:ff::{0x300 + i:x}", 40200, 53)) for i in range(5)],
                                        step(POD_SIDE, udp(POD, OUTSIDE, 40201, 53), advance=S601, expire=True)))
    # Placements.
    write("masq-flush-end", seq(step(POD_SIDE, udp(POD, OUTSIDE, 40008, 53)), answer(), error(0, TOO_BIG, 255), ctrl=1))
    write("clusterip-min-off", seq(step(POD_SIDE, tcp(POD, CLUSTER6, 45008, 80, SYN)), answer(0, SYNACK), error(0), ctrl=2))


if __name__ == "__main__":
    shutil.rmtree(OUT, ignore_errors=True)
    os.makedirs(OUT)
    seeds()
    files = os.listdir(OUT)
    print(f"nat66: {len(files)} seeds, {sum(os.path.getsize(os.path.join(OUT, f)) for f in files)} bytes")
