#!/usr/bin/python3
"""Seeds for the vxlan-super fuzz target (fuzz/corpus/vxlan-super/): byte 0
control (unused), outer TOS, then an inner IPv4 packet the harness wraps in
VXLAN + Ethernet from worker3 as one datagram. Valid TCP super-frames of a
few segments for worker2's pods and the refusals around them. Plain Python
(no scapy): the packets are simple enough to build by hand.

    python3 fuzz/seeds/make_super_seeds.py"""
import hashlib
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "corpus", "vxlan-super")


def ip4(a: str) -> bytes:
    return bytes(int(x) for x in a.split("."))


def csum(b: bytes) -> int:
    if len(b) % 2:
        b += b"\0"
    s = sum(struct.unpack(f"!{len(b) // 2}H", b))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def tcp_packet(src, dst, payload, flags=0x18, options=b"", proto=6, frag=0x4000, tot=None, seq=1000):
    doff = (20 + len(options)) // 4
    tcp = struct.pack("!HHIIBBHHH", 40000, 5201, seq, 7, doff << 4, flags, 502, 0, 0) + options
    pseudo = ip4(src) + ip4(dst) + struct.pack("!BBH", 0, 6, len(tcp) + len(payload))
    c = csum(pseudo + tcp + payload)
    tcp = tcp[:16] + struct.pack("!H", c) + tcp[18:]
    total = 20 + len(tcp) + len(payload)
    h = struct.pack("!BBHHHBBH4s4s", 0x45, 0, tot if tot is not None else total, 9, frag, 63, proto, 0, ip4(src), ip4(dst))
    h = h[:10] + struct.pack("!H", csum(h)) + h[12:]
    return h + tcp + payload


def write(name: str, tos: int, inner: bytes) -> None:
    data = bytes([0, tos]) + inner
    os.makedirs(OUT, exist_ok=True)
    with open(os.path.join(OUT, f"{name}-{hashlib.sha1(data).hexdigest()[:10]}"), "wb") as f:
        f.write(data)


if __name__ == "__main__":
    ts = b"\x01\x01\x08\x0a" + b"\x00\x01\x02\x03\x04\x05\x06\x07"
    body = bytes((i * 7) & 255 for i in range(7000))
    src, pod = "198.19.3.5", "198.19.2.7"
    write("two-segments", 0, tcp_packet(src, pod, body[:2000], options=ts))
    write("five-segments-fin-ecn", 2, tcp_packet(src, pod, body[:6500], flags=0x19 | 0x80))
    write("exactly-one-mss", 0, tcp_packet(src, pod, body[:1410]))
    write("other-destination", 0, tcp_packet(src, "198.19.9.9", body[:3000]))  # decap delivers it; the kernel routes
    write("spoofed-source", 0, tcp_packet("198.19.1.5", pod, body[:3000]))
    write("outer-ce-not-ect", 3, tcp_packet(src, pod, body[:3000]))
    write("udp-inner", 0, tcp_packet(src, pod, body[:3000], proto=17))
    write("length-mismatch", 0, tcp_packet(src, pod, body[:3000], tot=2000))
    write("fragment", 0, tcp_packet(src, pod, body[:3000], frag=0x2000))
    write("short", 0, tcp_packet(src, pod, b"")[:30])
    for f in sorted(os.listdir(OUT)):
        print(f)
