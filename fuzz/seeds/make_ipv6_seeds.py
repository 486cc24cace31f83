#!/usr/bin/python3
"""IPv6 seeds (issue 16) for the fuzz targets, in the harness's input format
(fuzz/harness.c): valid packets for every IPv6 path of worker2's topology
(W2_ROUTES6 there) and the refusals around them. They go to
fuzz/seeds/<target>/, which fuzz/run.mjs and test/fuzz-replay.test.ts read
next to fuzz/corpus/<target>/ (kept apart from the minimised corpus so they
can be regenerated; `node fuzz/run.mjs --minimize` merges what adds coverage
into the corpus). Plain Python, packets built by hand from RFC 8200, 4443
and 4861 (no scapy needed).

    python3 fuzz/seeds/make_ipv6_seeds.py"""
import hashlib
import ipaddress
import os
import shutil
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
SEP = b"\xffPK\xff"
TARGETS = ("pod-tun", "pod-tap", "vxlan-decap", "vxlan-inner6", "sit-inner", "ipip-decap", "roundtrip", "vxlan-super", "ip6tnl")

W1, W2, W3, W4 = "198.18.0.11", "198.18.0.12", "198.18.1.13", "198.18.0.14"
W2_MAC, W3_MAC = 0x0E0000000200, 0x0E0000000300
DEV_MAC = 0x02000000AA01
# Pods of worker N live in 2001:2:0:N::/64 (harness.c A6_NODE).
POD1, POD2, POD3, POD4 = "2001:2:0:1::5", "2001:2:0:2::7", "2001:2:0:3::5", "2001:2:0:4::5"
NO_ROUTE = "2001:2:0:77::1"
LL = "fe80::aa01"


def a6(s: str) -> bytes:
    return ipaddress.IPv6Address(s).packed


def ip4(a: str) -> bytes:
    return bytes(int(x) for x in a.split("."))


def mac(m: int) -> bytes:
    return m.to_bytes(6, "big")


def csum(b: bytes, s: int = 0) -> int:
    if len(b) % 2:
        b += b"\0"
    s += sum(struct.unpack(f"!{len(b) // 2}H", b))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def pseudo6(src: str, dst: str, nxt: int, n: int) -> int:
    b = a6(src) + a6(dst) + struct.pack("!IxxxB", n, nxt)
    return sum(struct.unpack("!20H", b))


def ipv6(src: str, dst: str, nxt: int, payload: bytes, tc: int = 0, flow: int = 0, hlim: int = 64, plen=None) -> bytes:
    head = struct.pack("!IHBB", (6 << 28) | (tc << 20) | flow, len(payload) if plen is None else plen, nxt, hlim)
    return head + a6(src) + a6(dst) + payload


def udp6(src: str, dst: str, data: bytes, sport=40000, dport=53, partial=False) -> bytes:
    u = struct.pack("!HHHH", sport, dport, 8 + len(data), 0) + data
    if partial:  # CHECKSUM_PARTIAL: the folded pseudo-header sum only
        c = ~csum(b"", pseudo6(src, dst, 17, len(u))) & 0xFFFF
    else:
        c = csum(u, pseudo6(src, dst, 17, len(u))) or 0xFFFF
    return u[:6] + struct.pack("!H", c) + u[8:]


def tcp6(src: str, dst: str, data: bytes, flags=0x18, seq=1000, options=b"", partial=False) -> bytes:
    doff = (20 + len(options)) // 4
    t = struct.pack("!HHIIBBHHH", 40000, 5201, seq, 7, doff << 4, flags, 502, 0, 0) + options + data
    c = ~csum(b"", pseudo6(src, dst, 6, len(t))) & 0xFFFF if partial else csum(t, pseudo6(src, dst, 6, len(t)))
    return t[:16] + struct.pack("!H", c) + t[18:]


def icmp6(src: str, dst: str, typ: int, code: int, rest: int, body: bytes) -> bytes:
    m = struct.pack("!BBHI", typ, code, 0, rest) + body
    return m[:2] + struct.pack("!H", csum(m, pseudo6(src, dst, 58, len(m)))) + m[4:]


def udp_pkt(src, dst, n=16, **kw) -> bytes:
    tc = kw.pop("tc", 0)
    return ipv6(src, dst, 17, udp6(src, dst, b"q" * n, **kw), tc=tc, flow=0x12345)


def tcp_pkt(src, dst, data=b"", tc=0, **kw) -> bytes:
    return ipv6(src, dst, 6, tcp6(src, dst, data, **kw), tc=tc)


def echo(src, dst, n=32) -> bytes:
    return ipv6(src, dst, 58, icmp6(src, dst, 128, 0, 0x00070001, b"p" * n))


def ns(target: str, src: str = LL, dst: str = "ff02::1:ff00:7", sll=DEV_MAC, hlim=255, corrupt=False) -> bytes:
    body = a6(target) + (b"\x01\x01" + mac(sll) if sll is not None else b"")
    pkt = bytearray(ipv6(src, dst, 58, icmp6(src, dst, 135, 0, 0, body), hlim=hlim))
    if corrupt:
        pkt[-1] ^= 1
    return bytes(pkt)


def eth(payload: bytes, dst=W2_MAC, src=DEV_MAC, etype=0x86DD) -> bytes:
    return mac(dst) + mac(src) + struct.pack("!H", etype) + payload


def vxlan(inner: bytes, etype=0x86DD, dst=W2_MAC, src=W3_MAC, vni=100) -> bytes:
    return struct.pack("!II", 0x08000000, vni << 8) + eth(inner, dst, src, etype)


def outer4(inner: bytes, src=W1, dst=W2, proto=41, tos=0) -> bytes:
    h = struct.pack("!BBHHHBBH4s4s", 0x45, tos, 20 + len(inner), 0, 0x4000, 64, proto, 0, ip4(src), ip4(dst))
    return h[:10] + struct.pack("!H", csum(h)) + h[12:] + inner


def batch(*segs: bytes, ctrl: int = 0) -> bytes:
    return bytes([ctrl]) + SEP.join(segs)


def write(target: str, name: str, data: bytes) -> None:
    d = os.path.join(HERE, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, f"{name}-{hashlib.sha1(data).hexdigest()[:10]}"), "wb") as f:
        f.write(data)


def pod_side() -> None:
    big = lambda dst, size: udp_pkt(POD2, dst, size - 48)
    pod = {
        "udp-vxlan": udp_pkt(POD2, POD3, tc=0xB8 | 2),
        "tcp-syn-sit": tcp_pkt(POD2, POD1, flags=0x02, tc=0x21),
        "echo-local": echo(POD2, "2001:2:0:2::9"),
        "echo-vxlan": echo(POD2, POD3),
        "direct-is-the-kernels": udp_pkt(POD2, POD4),
        "blackhole-112": udp_pkt(POD2, "2001:2:0:96::10"),
        "host-128-blackhole": udp_pkt(POD2, "2001:2:0:5::c8"),
        "deep-80-vxlan": udp_pkt(POD2, "2001:2:0:5:8000::7"),
        "under-64-direct": udp_pkt(POD2, "2001:2:0:5::1"),
        "nh-no-neigh": udp_pkt(POD2, "2001:2:0:7::1"),
        "nh-no-fdb": udp_pkt(POD2, "2001:2:0:8::1"),
        "no-route": udp_pkt(POD2, NO_ROUTE),
        "no-route-icmp6-error": ipv6(POD2, NO_ROUTE, 58, icmp6(POD2, NO_ROUTE, 1, 0, 0, udp_pkt(NO_ROUTE, POD2)[:48])),
        "no-route-echo-reply": ipv6(POD2, NO_ROUTE, 58, icmp6(POD2, NO_ROUTE, 129, 0, 1, b"r" * 8)),
        "too-big-vxlan-1500": big(POD3, 1500),
        "fits-vxlan-1450": big(POD3, 1450),
        "too-big-sit-1481": big(POD1, 1481),
        "too-big-1900": big(POD3, 1900),
        "no-next-header": ipv6(POD2, POD3, 59, b""),
        "jumbogram": ipv6(POD2, POD3, 17, udp6(POD2, POD3, b"j" * 8), plen=0),
        "link-local-src": udp_pkt("fe80::5", POD3),
        "multicast-dst": udp_pkt(POD2, "ff02::1"),
        "unspecified-src": udp_pkt("::", NO_ROUTE),
        "truncated": udp_pkt(POD2, POD3)[:50],
        "version-4-nibble-6": b"\x64" + udp_pkt(POD2, POD3)[1:],
        "hop-limit-0": ipv6(POD2, POD3, 17, udp6(POD2, POD3, b"h" * 8), hlim=0),
    }
    pod["padded"] = pod["udp-vxlan"] + b"\x00" * 20
    for name, pkt in pod.items():
        write("pod-tun", name, batch(pkt))
        write("pod-tap", name, batch(eth(pkt)))
    v4 = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 28, 1, 0, 64, 17, 0, ip4("198.19.2.7"), ip4("198.19.3.5"))
    v4 = v4[:10] + struct.pack("!H", csum(v4)) + v4[12:] + struct.pack("!HHHH", 1, 2, 8, 0)
    write("pod-tun", "batch-4-mixed", batch(pod["udp-vxlan"], v4, pod["no-route"], pod["too-big-sit-1481"]))
    write("pod-tun", "slot-end-no-route", batch(pod["no-route"], ctrl=1))
    write("pod-tun", "min-off-too-big", batch(pod["too-big-vxlan-1500"], ctrl=2))
    write("pod-tun", "min-off-no-route", batch(pod["no-route"], ctrl=2))
    # Proxy neighbour discovery on the tap.
    nsf = lambda target, **kw: eth(ns(target, **kw), dst=0x3333FF000007)
    tap = {
        "ns-vxlan-target": nsf(POD3),
        "ns-sit-target": nsf(POD1, sll=None),
        "ns-direct-target": nsf(POD4),
        "ns-deep-80-target": nsf("2001:2:0:5:8000::7"),
        "ns-unicast": eth(ns(POD3, dst=POD3)),
        "ns-global-source": nsf(POD3, src=POD2),
        "ns-dad": nsf(POD3, src="::", sll=None),
        "ns-local-target": nsf("2001:2:0:2::9"),
        "ns-unrouted-target": nsf(NO_ROUTE),
        "ns-blackhole-target": nsf("2001:2:0:96::1"),
        "ns-bad-checksum": nsf(POD3, corrupt=True),
        "ns-hop-limit-64": nsf(POD3, hlim=64),
        "ns-multicast-target": nsf("ff02::1"),
        "ns-truncated": nsf(POD3)[:14 + 40 + 20],
        "na-not-answered": eth(ipv6(LL, POD3, 58, icmp6(LL, POD3, 136, 0, 0x60000000, a6(LL)), hlim=255)),
        "router-solicitation": eth(ipv6(LL, "ff02::2", 58, icmp6(LL, "ff02::2", 133, 0, 0, b""), hlim=255)),
        "no-route-to-sender-mac": eth(pod["no-route"], src=0x020000000777),
    }
    for name, pkt in tap.items():
        write("pod-tap", name, batch(pkt))
    write("pod-tap", "batch-ns-ip", batch(tap["ns-vxlan-target"], eth(pod["udp-vxlan"]), tap["ns-dad"], eth(pod["too-big-vxlan-1500"])))
    write("pod-tap", "min-off-ns", batch(tap["ns-vxlan-target"], ctrl=2))
    write("pod-tap", "slot-end-too-big", batch(eth(pod["too-big-sit-1481"]), ctrl=1))


def decap_cases(src: str) -> dict:
    """Inner packets from a pod behind the sending peer (`src`), and the refusals."""
    inner = lambda s, dst=POD2, **kw: udp_pkt(s, dst, **kw)
    return {
        "udp": inner(src),
        "tcp-full-checksum": tcp_pkt(src, POD2, b"t" * 33),
        "tcp-partial-checksum": tcp_pkt(src, POD2, b"t" * 33, partial=True),
        "udp-partial-checksum": ipv6(src, POD2, 17, udp6(src, POD2, b"u" * 21, partial=True)),
        "echo": echo(src, POD2),
        "other-destination": inner(src, NO_ROUTE),
        "spoofed-direct-source": inner("2001:2:0:5::9"),
        "spoofed-w2-source": inner("2001:2:0:2::9"),
        "link-local-source": inner("fe80::5"),
        "multicast-destination": inner(src, "ff02::1"),
        "padded": inner(src) + b"\x00" * 14,
        "truncated": inner(src)[:45],
        "jumbogram": ipv6(src, POD2, 17, udp6(src, POD2, b"j" * 8), plen=0),
    }


def decap() -> None:
    # From worker3's pods over VXLAN (2001:2:0:5:8000::/80 routes there too),
    # from worker1's over protocol 41.
    ecn = {"ect0-outer-ce": (2, 3), "notect-outer-ce": (0, 3), "ect0-outer-ect1": (2, 1), "ce-outer-ect0": (3, 2)}
    for target, src in (("vxlan-inner6", POD3), ("sit-inner", POD1)):
        cases = decap_cases(src)
        if target == "vxlan-inner6":
            cases["deep-80-source"] = udp_pkt("2001:2:0:5:8000::9", POD2)
            cases["w1-source"] = udp_pkt(POD1, POD2)
        else:
            cases["w3-source"] = udp_pkt(POD3, POD2)
        for name, pkt in cases.items():
            write(target, name, batch(b"\x00" + pkt))
        for name, (ie, oe) in ecn.items():
            write(target, name, batch(bytes([oe]) + udp_pkt(src, POD2, tc=0xB8 | ie)))
        write(target, "batch-4", batch(b"\x00" + cases["udp"], b"\x03" + cases["udp"], b"\x00" + udp_pkt(POD4, POD2), b"\x02" + cases["echo"]))
        write(target, "slot-end", batch(b"\x00" + udp_pkt(src, POD2, n=1000), ctrl=1))
        write(target, "min-off", batch(b"\x01" + udp_pkt(src, POD2, tc=2), ctrl=2))
    vx = lambda src, pkt, tos=0, etype=0x86DD: ip4(src) + bytes([tos]) + vxlan(pkt, etype)
    write("vxlan-decap", "ipv6-udp", batch(vx(W3, udp_pkt(POD3, POD2))))
    write("vxlan-decap", "ipv6-from-w4-direct", batch(vx(W4, udp_pkt(POD4, POD2))))
    write("vxlan-decap", "ipv6-in-0800", batch(vx(W3, udp_pkt(POD3, POD2), etype=0x0800)))
    write("vxlan-decap", "ipv4-in-86dd", batch(vx(W3, bytes.fromhex("4500001c00010000401100000000000000000000") + b"\0" * 8)))
    write("vxlan-decap", "ipv6-tcp-partial-ce", batch(vx(W3, tcp_pkt(POD3, POD2, b"c" * 40, tc=1, partial=True), tos=3)))
    write("ipip-decap", "sit-udp", batch(outer4(udp_pkt(POD1, POD2))))
    write("ipip-decap", "sit-tcp-partial", batch(outer4(tcp_pkt(POD1, POD2, b"s" * 60, partial=True), tos=2)))
    write("ipip-decap", "sit-spoofed", batch(outer4(udp_pkt(POD3, POD2))))
    write("ipip-decap", "sit-not-local", batch(outer4(udp_pkt(POD1, POD2), dst=W3)))
    write("ipip-decap", "sit-unknown-peer", batch(outer4(udp_pkt(POD1, POD2), src="198.18.0.99")))
    write("ipip-decap", "sit-padded-outer", batch(outer4(udp_pkt(POD1, POD2)) + b"\x00" * 10))


def roundtrip() -> None:
    # ctrl, then [flags (bit 6: IPv6), traffic class, hop limit, next header, src, dst, flow x2, ports x4], payload
    rt = lambda ctrl, flags, tc, hlim, nxt, rest: bytes([ctrl, 0x40 | flags, tc, hlim, nxt, 7, 5, 0x12, 0x34, 0x9C, 0x40, 0, 53]) + rest
    write("roundtrip", "ipv6-vxlan-udp", rt(0, 0x00, 0x00, 62, 0, b"payload"))
    write("roundtrip", "ipv6-sit-ect", rt(0, 0x01, 0x02, 62, 0, b"x" * 100))
    write("roundtrip", "ipv6-vxlan-flow-ce", rt(2, 0x3C, 0xB8 | 3, 10, 0x81, b"z" * 40))
    write("roundtrip", "ipv6-vxlan-max-slot-end", rt(1, 0x00, 0xB8, 200, 0, b"m" * 1500))
    write("roundtrip", "ipv6-sit-max", rt(0, 0x01, 0x00, 1, 0, b"i" * 1500))
    write("roundtrip", "ipv6-no-next-header", rt(0, 0x01, 0x00, 64, 0x90, b""))


def super_frames() -> None:
    body = bytes((i * 7) & 255 for i in range(14000))
    ts = b"\x01\x01\x08\x0a" + bytes(range(8))
    src, pod = POD3, POD2
    sup = lambda name, tos, pkt: write("vxlan-super", name, bytes([0, tos]) + pkt)
    sup("ipv6-two-segments", 0, tcp_pkt(src, pod, body[:2000], options=ts))
    sup("ipv6-five-segments-fin-psh-cwr-ect0", 2, tcp_pkt(src, pod, body[:6500], flags=0x19 | 0x80, tc=0xB8 | 2))
    sup("ipv6-partial-checksum", 0, tcp_pkt(src, pod, body[:3000], partial=True))
    sup("ipv6-exactly-one-mss", 0, tcp_pkt(src, pod, body[:1390]))
    sup("ipv6-bare-ack", 0, tcp_pkt(src, pod, b"", flags=0x10))
    sup("ipv6-ten-segments-no-room", 0, tcp_pkt(src, pod, body[:13000]))
    sup("ipv6-deep-80-source", 0, tcp_pkt("2001:2:0:5:8000::9", pod, body[:3000]))
    sup("ipv6-spoofed-source", 0, tcp_pkt(POD1, pod, body[:3000]))
    sup("ipv6-outer-ce-not-ect", 3, tcp_pkt(src, pod, body[:3000]))
    sup("ipv6-udp-inner", 0, ipv6(src, pod, 17, udp6(src, pod, body[:3000])))
    sup("ipv6-extension-header", 0, ipv6(src, pod, 0, b"\x06\x00" + b"\x01\x04\x00\x00\x00\x00" + tcp6(src, pod, body[:2000])))
    p = bytearray(tcp_pkt(src, pod, body[:3000]))
    p[4:6] = struct.pack("!H", 2000)
    sup("ipv6-length-mismatch", 0, bytes(p))
    sup("ipv6-short", 0, tcp_pkt(src, pod, b"")[:50])


# Peer 3 (W6) reached over the IPv6 underlay (harness.c W2_PEERS[3]): its
# pods 198.19.9.0/24 and 2001:2:0:9::/64 over VXLAN in UDP/IPv6, 198.19.10.0/24
# and 2001:2:0:a::/64 over IPv4/IPv6 in IPv6; outer headers 20 bytes longer.
POD6_VX, POD6_TNL = "2001:2:0:9::5", "2001:2:0:a::5"
POD4_VX, POD4_TNL, POD4_W2, POD4_W3 = "198.19.9.5", "198.19.10.5", "198.19.2.7", "198.19.3.5"


def ipv4_udp(src: str, dst: str, n=16, tos=0, df=True, partial=False) -> bytes:
    u = struct.pack("!HHHH", 40000, 53, 8 + n, 0) + b"q" * n
    ps = sum(struct.unpack("!4H", ip4(src) + ip4(dst))) + 17 + len(u)
    c = (~csum(b"", ps) & 0xFFFF) if partial else (csum(u, ps) or 0xFFFF)
    u = u[:6] + struct.pack("!H", c) + u[8:]
    h = struct.pack("!BBHHHBBH4s4s", 0x45, tos, 20 + len(u), 7, 0x4000 if df else 0, 64, 17, 0, ip4(src), ip4(dst))
    return h[:10] + struct.pack("!H", csum(h)) + h[12:] + u


def underlay6() -> None:
    pod = {
        "over6-udp-vxlan": udp_pkt(POD2, POD6_VX, tc=0xB8 | 2),
        "over6-tcp-ip6ip6": tcp_pkt(POD2, POD6_TNL, flags=0x02, tc=0x21),
        "over6-ipv4-vxlan": ipv4_udp(POD4_W2, POD4_VX, tos=0xB8 | 1),
        "over6-ipv4-ipip6": ipv4_udp(POD4_W2, POD4_TNL, tos=0x22),
        "over6-vxlan-1430-fits": udp_pkt(POD2, POD6_VX, 1430 - 48),
        "over6-too-big-vxlan-1431": udp_pkt(POD2, POD6_VX, 1431 - 48),
        "over6-too-big-ip6ip6-1461": udp_pkt(POD2, POD6_TNL, 1461 - 48),
        "over6-ipv4-too-big-df-1431": ipv4_udp(POD4_W2, POD4_VX, 1431 - 28),
        "over6-ipv4-too-big-no-df-1461": ipv4_udp(POD4_W2, POD4_TNL, 1461 - 28, df=False),
        "over6-ipv4-ipip6-1460-fits": ipv4_udp(POD4_W2, POD4_TNL, 1460 - 28, df=False),
    }
    for name, pkt in pod.items():
        write("pod-tun", name, batch(pkt))
        write("pod-tap", name, batch(eth(pkt, etype=0x86DD if pkt[0] >> 4 == 6 else 0x0800)))
    write("pod-tun", "over6-batch-4", batch(pod["over6-udp-vxlan"], pod["over6-ipv4-ipip6"], pod["over6-tcp-ip6ip6"], pod["over6-ipv4-vxlan"]))
    # ip6tnl: a segment is the outer traffic class, then the inner packet;
    # byte 0 bits 2-3 the sender: 0 W6 (over IPv6), 1 W3, 2 none, 3 unknown.
    tnl = lambda tc, pkt: bytes([tc]) + pkt
    write("ip6tnl", "ipv4-udp", batch(tnl(0, ipv4_udp(POD4_TNL, POD4_W2))))
    write("ip6tnl", "ipv4-partial-checksum", batch(tnl(0, ipv4_udp(POD4_VX, POD4_W2, partial=True))))
    write("ip6tnl", "ipv4-ce-outer-ect0", batch(tnl(3, ipv4_udp(POD4_TNL, POD4_W2, tos=2))))
    write("ip6tnl", "ipv4-notect-outer-ce", batch(tnl(3, ipv4_udp(POD4_TNL, POD4_W2))))
    write("ip6tnl", "ipv4-spoofed-w3-source", batch(tnl(0, ipv4_udp(POD4_W3, POD4_W2))))
    write("ip6tnl", "ipv6-udp", batch(tnl(0xB8, udp_pkt(POD6_TNL, POD2))))
    write("ip6tnl", "ipv6-udp-partial-checksum", batch(tnl(0, udp_pkt(POD6_VX, POD2, partial=True))))
    write("ip6tnl", "ipv6-tcp-ce", batch(tnl(3, tcp_pkt(POD6_TNL, POD2, b"data", tc=1))))
    write("ip6tnl", "ipv6-spoofed-w1-source", batch(tnl(0, udp_pkt(POD1, POD2))))
    write("ip6tnl", "ipv4-from-w3", batch(tnl(0, ipv4_udp(POD4_W3, POD4_W2)), ctrl=1 << 2))
    write("ip6tnl", "ipv6-from-w3", batch(tnl(0, udp_pkt(POD3, POD2)), ctrl=1 << 2))
    write("ip6tnl", "no-sender", batch(tnl(0, ipv4_udp(POD4_TNL, POD4_W2)), ctrl=2 << 2))
    write("ip6tnl", "unknown-sender", batch(tnl(0, udp_pkt(POD6_TNL, POD2)), ctrl=3 << 2))
    write("ip6tnl", "not-ip", batch(tnl(0, b"\x55" * 40)))
    write("ip6tnl", "empty", batch(b"\0"))
    write("ip6tnl", "batch-4", batch(tnl(0, ipv4_udp(POD4_TNL, POD4_W2)), tnl(1, udp_pkt(POD6_VX, POD2)), tnl(0, echo(POD6_TNL, POD2)),
                                     tnl(2, ipv4_udp(POD4_VX, POD4_W2, tos=1)), ctrl=1))


if __name__ == "__main__":
    for t in TARGETS:  # this script owns these directories
        shutil.rmtree(os.path.join(HERE, t), ignore_errors=True)
    pod_side()
    decap()
    roundtrip()
    super_frames()
    underlay6()
    for t in TARGETS:
        files = os.listdir(os.path.join(HERE, t))
        print(f"{t}: {len(files)} seeds, {sum(os.path.getsize(os.path.join(HERE, t, f)) for f in files)} bytes")
