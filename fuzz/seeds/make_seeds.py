#!/usr/bin/python3
"""Write the fuzz seed corpus (fuzz/corpus/<target>/) in the harness's input
format (see fuzz/harness.c): real frames captured from the kernel's vxlan
(fuzz/seeds/kernel-vxlan.cap, made by capture.sh) and cases crafted with
scapy, valid and malformed, for the worker2 topology the harness loads.

    /usr/bin/python3 fuzz/seeds/make_seeds.py  (Debian python3-scapy) [CAPTURE]

Afterwards `node fuzz/run.mjs --minimize` keeps only the inputs that add
coverage (libFuzzer -merge=1)."""
import hashlib
import os
import sys

from scapy.all import ARP, ICMP, IP, TCP, UDP, Ether, Raw, rdpcap  # type: ignore
from scapy.layers.vxlan import VXLAN  # type: ignore

HERE = os.path.dirname(os.path.abspath(__file__))
CORPUS = os.path.join(HERE, "..", "corpus")
SEP = b"\xffPK\xff"

W1, W2, W3, W4 = "198.18.0.11", "198.18.0.12", "198.18.1.13", "198.18.0.14"
W1_MAC, W2_MAC, W3_MAC = "0e:00:00:00:01:00", "0e:00:00:00:02:00", "0e:00:00:00:03:00"
DEV_MAC = "02:00:00:00:aa:01"
POD2, POD3, POD1, POD4 = "198.19.2.7", "198.19.3.5", "198.19.1.5", "198.19.4.5"


def ip4(a: str) -> bytes:
    return bytes(int(x) for x in a.split("."))


def write(target: str, name: str, data: bytes) -> None:
    d = os.path.join(CORPUS, target)
    os.makedirs(d, exist_ok=True)
    h = hashlib.sha1(data).hexdigest()[:10]
    with open(os.path.join(d, f"{name}-{h}"), "wb") as f:
        f.write(data)


def batch(*segs: bytes, ctrl: int = 0) -> bytes:
    return bytes([ctrl]) + SEP.join(segs)


def raw(p) -> bytes:
    return bytes(p)


def vxlan_payload(inner: bytes, vni: int = 100, flags: int = 0x08, dst=W2_MAC, src=W3_MAC, etype=0x0800) -> bytes:
    return raw(VXLAN(flags=flags, vni=vni) / Ether(dst=dst, src=src, type=etype) / Raw(inner))


def vx_seg(payload: bytes, src=W3, tos=0) -> bytes:
    return ip4(src) + bytes([tos]) + payload


def ipv4(src, dst, proto_layer=None, **kw) -> bytes:
    p = IP(src=src, dst=dst, **kw)
    return raw(p / proto_layer if proto_layer is not None else p)


def from_capture(path: str) -> None:
    if not os.path.exists(path):
        print(f"no capture at {path}: skipping real frames (run capture.sh as root)")
        return
    for i, f in enumerate(rdpcap(path)):
        if IP not in f or UDP not in f or f[UDP].dport != 4789:
            continue
        o = f[IP]
        payload = raw(f[UDP].payload)
        write("vxlan-decap", f"kernel-{i}", batch(vx_seg(payload, o.src, o.tos)))
        inner = payload[8 + 14:]
        if len(inner) < 20:
            continue
        write("vxlan-inner", f"kernel-{i}", batch(bytes([o.tos]) + inner))
        # The same inner packets as worker1 would send them over IPIP.
        ii = IP(inner)
        ii.src = POD1
        del ii.chksum
        write("ipip-decap", f"kernel-{i}", batch(raw(IP(src=W1, dst=W2, proto=4, tos=o.tos) / ii)))
        # And as worker2's own pods would send them (reverse direction), tun and tap.
        for dst, what in ((POD3, "vxlan"), (POD1, "ipip"), (POD4, "direct")):
            rev = IP(inner)
            rev.src, rev.dst = POD2, dst
            del rev.chksum
            if ICMP in rev:
                del rev[ICMP].chksum
            write("pod-tun", f"kernel-{i}-{what}", batch(raw(rev)))
            write("pod-tap", f"kernel-{i}-{what}", batch(raw(Ether(dst=W2_MAC, src=DEV_MAC, type=0x0800) / rev)))


def crafted() -> None:
    udp = UDP(sport=40000, dport=53) / Raw(b"q" * 16)
    icmp = ICMP(type=8, id=7, seq=1) / Raw(b"p" * 32)
    inner3 = ipv4(POD3, POD2, udp)
    # --- vxlan-decap
    good = vxlan_payload(inner3)
    cases = {
        "good": vx_seg(good),
        "ect0-ce": vx_seg(vxlan_payload(ipv4(POD3, POD2, udp, tos=0x02)), tos=0x03),
        "notect-ce": vx_seg(good, tos=0x03),
        "bad-flags": vx_seg(vxlan_payload(inner3, flags=0x00)),
        "reserved-bits": vx_seg(vxlan_payload(inner3, flags=0xff)),
        "bad-vni": vx_seg(vxlan_payload(inner3, vni=101)),
        "unknown-peer": vx_seg(good, src="198.18.0.99"),
        "ipip-peer": vx_seg(good, src=W1),
        "ethertype-arp": vx_seg(vxlan_payload(inner3, etype=0x0806)),
        "dst-mac": vx_seg(vxlan_payload(inner3, dst="0e:00:00:00:09:00")),
        "spoofed": vx_seg(vxlan_payload(ipv4("198.19.1.9", POD2, udp))),
        "martian": vx_seg(vxlan_payload(ipv4(POD3, "224.0.0.5", udp))),
        "truncated": vx_seg(good[:20]),
        "inner-truncated": vx_seg(good[:22 + 30]),
        "inner-bad-checksum": vx_seg(vxlan_payload(ipv4(POD3, POD2, udp, chksum=0x1234))),
        "inner-ihl-3": vx_seg(good[:22] + bytes([0x43]) + good[23:]),
        "inner-tl-small": vx_seg(good[:24] + b"\x00\x10" + good[26:]),
        "inner-padding": vx_seg(good + b"\x00" * 18),
        "inner-options": vx_seg(vxlan_payload(ipv4(POD3, POD2, udp, options=[b"\x01\x01\x01\x00"]))),
    }
    for name, seg in cases.items():
        write("vxlan-decap", name, batch(seg))
        write("vxlan-inner", name, batch(bytes([seg[4]]) + seg[5 + 22:]))
    write("vxlan-decap", "batch-4", batch(cases["good"], cases["bad-vni"], cases["notect-ce"], cases["spoofed"]))
    write("vxlan-decap", "slot-end", batch(cases["good"], ctrl=1))
    write("vxlan-decap", "min-off", batch(cases["good"], ctrl=2))
    # --- ipip-decap
    inner1 = ipv4(POD1, POD2, udp)
    ipip = {
        "good": raw(IP(src=W1, dst=W2, proto=4) / Raw(inner1)),
        "ce": raw(IP(src=W1, dst=W2, proto=4, tos=3) / Raw(ipv4(POD1, POD2, udp, tos=1))),
        "notect-ce": raw(IP(src=W1, dst=W2, proto=4, tos=3) / Raw(inner1)),
        "bad-proto": raw(IP(src=W1, dst=W2, proto=41) / Raw(inner1)),
        "not-local": raw(IP(src=W1, dst=W3, proto=4) / Raw(inner1)),
        "unknown-peer": raw(IP(src="198.18.0.99", dst=W2, proto=4) / Raw(inner1)),
        "spoofed": raw(IP(src=W1, dst=W2, proto=4) / Raw(ipv4(POD3, POD2, udp))),
        "inner-short": raw(IP(src=W1, dst=W2, proto=4) / Raw(inner1[:19])),
        "outer-options": raw(IP(src=W1, dst=W2, proto=4, options=[b"\x01\x01\x01\x00"]) / Raw(inner1)),
        "outer-padding": raw(IP(src=W1, dst=W2, proto=4) / Raw(inner1)) + b"\x00" * 10,
        "outer-tl-short": None,
        "direct-peer": raw(IP(src=W4, dst=W2, proto=4) / Raw(ipv4(POD4, POD2, udp))),
    }
    g = bytearray(ipip["good"])
    g[2:4] = (30).to_bytes(2, "big")
    ipip["outer-tl-short"] = bytes(g)
    for name, pkt in ipip.items():
        write("ipip-decap", name, batch(pkt))
    write("ipip-decap", "batch-3", batch(ipip["good"], ipip["bad-proto"], ipip["ce"]))
    write("ipip-decap", "slot-end", batch(ipip["good"], ctrl=1))
    # --- pod side (tun and tap)
    big = Raw(b"x" * 1460)
    pod = {
        "vxlan": ipv4(POD2, POD3, udp),
        "ipip": ipv4(POD2, POD1, icmp),
        "direct": ipv4(POD2, POD4, TCP(sport=1234, dport=80, flags="S")),
        "local": ipv4(POD2, "198.19.2.9", udp),
        "blackhole": ipv4(POD2, "198.18.96.1", udp),
        "no-route": ipv4(POD2, "198.19.9.9", udp),
        "no-route-icmp-err": ipv4(POD2, "198.19.9.9", ICMP(type=3, code=1) / Raw(ipv4(POD3, POD2, udp))),
        "ttl-1": ipv4(POD2, POD3, udp, ttl=1),
        "ttl-0-local": ipv4(POD2, "198.19.2.9", udp, ttl=0),
        "too-big-df": ipv4(POD2, POD3, UDP(sport=1, dport=2) / big, flags="DF"),
        "too-big-nodf": ipv4(POD2, POD3, UDP(sport=1, dport=2) / big),
        "too-big-ipip": ipv4(POD2, POD1, UDP(sport=1, dport=2) / big, flags="DF"),
        "later-fragment": ipv4(POD2, "198.19.9.9", Raw(b"f" * 40), frag=100, proto=17),
        "first-fragment": ipv4(POD2, POD3, udp, flags="MF"),
        "tbl8-direct": ipv4(POD2, "198.19.5.1", udp),
        "tbl8-vxlan": ipv4(POD2, "198.19.5.130", udp),
        "tbl8-host-blackhole": ipv4(POD2, "198.19.5.200", udp),
        "tbl8-miss": ipv4(POD2, "198.19.5.250", udp),
        "no-neigh": ipv4(POD2, "198.19.7.1", udp),
        "no-fdb": ipv4(POD2, "198.19.8.1", udp),
        "martian-src": ipv4("0.0.0.1", POD3, udp),
        "martian-dst": ipv4(POD2, "255.255.255.255", udp),
        "bad-checksum": ipv4(POD2, POD3, udp, chksum=0xbeef),
        "options": ipv4(POD2, POD3, udp, options=[b"\x07\x07\x04\x00\x00\x00\x00\x00"]),
        "short": ipv4(POD2, POD3, udp)[:19],
        "ihl-15": ipv4(POD2, POD3, udp, ihl=15),
    }
    pod["padding"] = pod["vxlan"] + b"\x00" * 20
    for name, pkt in pod.items():
        write("pod-tun", name, batch(pkt))
        write("pod-tap", name, batch(raw(Ether(dst=W2_MAC, src=DEV_MAC, type=0x0800) / Raw(pkt))))
    write("pod-tun", "batch-4", batch(pod["vxlan"], pod["ipip"], pod["direct"], pod["no-route"]))
    write("pod-tun", "slot-end-icmp", batch(pod["no-route"], ctrl=1))
    write("pod-tun", "min-off-vxlan", batch(pod["vxlan"], ctrl=2))
    arp = lambda **kw: raw(Ether(dst="ff:ff:ff:ff:ff:ff", src=DEV_MAC) / ARP(hwsrc=DEV_MAC, psrc=POD2, **kw))
    tap = {
        "arp-neigh": arp(pdst="198.19.3.0"),
        "arp-proxy": arp(pdst=POD1),
        "arp-local": arp(pdst="198.19.2.9"),
        "arp-unrouted": arp(pdst="198.19.9.9"),
        "arp-reply": arp(op=2, pdst="198.19.3.0"),
        "arp-self": arp(pdst=POD2),
        "arp-short": arp(pdst="198.19.3.0")[:30],
        "arp-bad-hlen": raw(Ether(dst="ff:ff:ff:ff:ff:ff", src=DEV_MAC) / ARP(hwlen=8, pdst=POD1)),
        "ipv6": raw(Ether(dst=W2_MAC, src=DEV_MAC, type=0x86DD) / Raw(b"\x60" + b"\x00" * 39)),
        "multicast-dst": raw(Ether(dst="01:00:5e:00:00:01", src=DEV_MAC, type=0x0800) / Raw(pod["vxlan"])),
        "short-eth": b"\x0e\x00\x00\x00\x02",
    }
    tap["arp-padded"] = tap["arp-proxy"] + b"\x00" * 18
    for name, pkt in tap.items():
        write("pod-tap", name, batch(pkt))
    write("pod-tap", "batch-arp-ip", batch(tap["arp-neigh"], raw(Ether(dst=W2_MAC, src=DEV_MAC, type=0x0800) / Raw(pod["vxlan"]))))
    # --- roundtrip: ctrl, then the recipe [flags, tos, ttl, proto, src, dst, id x2, ports x4] options payload
    rt = lambda ctrl, flags, tos, ttl, proto, rest: bytes([ctrl, flags, tos, ttl, proto, 7, 5, 0x12, 0x34, 0x9c, 0x40, 0, 53]) + rest
    write("roundtrip", "vxlan-udp", rt(0, 0x00, 0x00, 62, 0, b"payload"))
    write("roundtrip", "ipip-df-ect", rt(0, 0x03, 0x02, 62, 0, b"x" * 100))
    write("roundtrip", "vxlan-options-ce", rt(2, 0x08, 0x03, 10, 0x81, b"\x07\x07\x04\x00" + b"z" * 40))
    write("roundtrip", "vxlan-max-slot-end", rt(1, 0x02, 0xb8, 200, 0, b"m" * 1500))
    write("roundtrip", "ipip-max", rt(0, 0x03, 0x00, 1, 0, b"i" * 1500))

if __name__ == "__main__":
    from_capture(sys.argv[1] if len(sys.argv) > 1 else os.path.join(HERE, "kernel-vxlan.cap"))
    crafted()
    for t in sorted(os.listdir(CORPUS)):
        files = os.listdir(os.path.join(CORPUS, t))
        size = sum(os.path.getsize(os.path.join(CORPUS, t, f)) for f in files)
        print(f"{t}: {len(files)} seeds, {size} bytes")
