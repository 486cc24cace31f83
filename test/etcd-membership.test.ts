// The pure parts of etcd membership: which subnet to lease, how etcd records
// merge with the config file's peers, how records are parsed. No etcd needed.
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { validateConfig } from "../src/config/load.js";
import { ipv6SubnetFor, isSubnetOf, subnetCandidates, subnetsOf } from "../src/membership/allocate.js";
import { checkConfigFile } from "../src/membership/check.js";
import { composeDocument, etcdSection, mergePeers, validateMerged, type LiveRecord } from "../src/membership/merge.js";
import { parseRecord, subnetKey, subnetOfKey, type NodeRecord } from "../src/membership/records.js";

const base = { network: "198.19.0.0/16", subnetLength: 24, name: "w1", live: new Map<string, string>(), reserved: new Map<string, string>(), avoid: [] as string[] };

describe("subnet allocation", () => {
  it("enumerates the subnets of the network lazily, in address order", () => {
    const it = subnetsOf("198.19.0.0/16", 24);
    expect([it.next().value, it.next().value]).toEqual(["198.19.0.0/24", "198.19.1.0/24"]);
    expect([...subnetsOf("198.19.4.0/23", 24)]).toEqual(["198.19.4.0/24", "198.19.5.0/24"]);
    expect([...subnetsOf("198.19.4.0/24", 23)]).toEqual([]);
    expect(subnetsOf("10.0.0.0/8", 30).next().value).toBe("10.0.0.0/30"); // 4M subnets, not materialised
  });

  it("takes the first free subnet, skipping live ones and config peers' pod CIDRs", () => {
    const live = new Map([["198.19.0.0/24", "w2"]]);
    expect(subnetCandidates({ ...base, live, avoid: ["198.19.1.0/25"], limit: 2 })).toEqual(["198.19.2.0/24", "198.19.3.0/24"]);
  });

  it("keeps the previous subnet when it is free or still held by our own name", () => {
    expect(subnetCandidates({ ...base, previous: "198.19.7.0/24", limit: 1 })).toEqual(["198.19.7.0/24"]);
    const live = new Map([["198.19.7.0/24", "w1"]]);
    expect(subnetCandidates({ ...base, live, previous: "198.19.7.0/24", limit: 1 })).toEqual(["198.19.7.0/24"]);
  });

  it("does not take a previous subnet another node holds now, or one outside the network or of another size", () => {
    const live = new Map([["198.19.7.0/24", "w9"]]);
    expect(subnetCandidates({ ...base, live, previous: "198.19.7.0/24", limit: 1 })).toEqual(["198.19.0.0/24"]);
    expect(subnetCandidates({ ...base, previous: "198.18.7.0/24", limit: 1 })).toEqual(["198.19.0.0/24"]);
    expect(subnetCandidates({ ...base, previous: "198.19.7.0/25", limit: 1 })).toEqual(["198.19.0.0/24"]);
  });

  it("hands out subnets other nodes had before only when nothing else is left", () => {
    const reserved = new Map([["198.19.4.0/24", "w2"]]);
    expect(subnetCandidates({ ...base, network: "198.19.4.0/23", reserved })).toEqual(["198.19.5.0/24", "198.19.4.0/24"]);
    const live = new Map([["198.19.5.0/24", "w3"]]);
    expect(subnetCandidates({ ...base, network: "198.19.4.0/23", reserved, live })).toEqual(["198.19.4.0/24"]);
    expect(subnetCandidates({ ...base, network: "198.19.4.0/23", live: new Map([["198.19.4.0/24", "a"], ["198.19.5.0/24", "b"]]) })).toEqual([]);
  });

  it("isSubnetOf checks containment and length", () => {
    expect(isSubnetOf("198.19.3.0/24", "198.19.0.0/16", 24)).toBe(true);
    expect(isSubnetOf("198.19.3.0/25", "198.19.0.0/16", 24)).toBe(false);
    expect(isSubnetOf("198.18.3.0/24", "198.19.0.0/16", 24)).toBe(false);
    expect(isSubnetOf("nonsense", "198.19.0.0/16", 24)).toBe(false);
  });
});

const rec = (node: string, n: number, over: Partial<NodeRecord> = {}): NodeRecord => ({
  node, underlay: `198.18.0.${n}`, podCIDR: `198.19.${n}.0/24`, vtepMac: `0e:00:00:00:00:${n.toString(16).padStart(2, "0")}`, encapsulation: "auto", leasedAt: "2026-01-01T00:00:00.000Z", ...over,
});
const live = (r: NodeRecord, modRevision = 1): LiveRecord => ({ record: r, modRevision });
const doc = (peers: unknown[] = []) => ({
  node: { name: "w1", underlay: { address: "198.18.0.1", prefixLength: 24 } },
  peers,
});

describe("merging etcd peers with the config file", () => {
  it("adds one peer per record, sorted by name, and the result validates", () => {
    const m = mergePeers(doc(), "198.19.1.0/24", [live(rec("w3", 3)), live(rec("w2", 2))]);
    expect(m.dropped).toEqual([]);
    expect(m.peers.map((p) => p.name)).toEqual(["w2", "w3"]);
    const r = validateConfig(composeDocument(doc(), { endpoints: ["http://198.18.0.1:2379"] }, "198.19.1.0/24", m.peers));
    expect(r.ok && r.config.peers.map((p) => [p.name, p.podCIDRs[0], p.vtepAddress])).toEqual([["w2", "198.19.2.0/24", "198.19.2.0"], ["w3", "198.19.3.0/24", "198.19.3.0"]]);
    expect(r.ok && r.config.node.podCIDR).toBe("198.19.1.0/24");
  });

  it("a record asking for the IPv6 underlay (etcd.underlay6) gets it where this node has an IPv6 underlay address, else IPv4", () => {
    const six = (peers: unknown[] = []) => ({ ...doc(peers), node: { ...doc().node, ipv6: { podCIDR: "2001:2:0:1::/64", underlayAddress: "2001:2:ff::1" } } });
    const filePeer = { name: "static", underlay: "198.18.0.50", underlay6: "2001:2:ff::50", podCIDRs: ["198.19.50.0/24"], vtepMac: "0e:00:00:00:00:50" };
    const records = [
      live(rec("w2", 2, { underlay6: "2001:2:ff:0::2" })),
      live(rec("w3", 3)),
      live(rec("w4", 4, { underlay6: "2001:2:ff::4", encapsulation: "ipip" })),
      live(rec("w5", 5, { underlay6: "2001:2:ff::5", encapsulation: "direct" })), // direct: IPv4 only
      live(rec("mine6", 6, { underlay6: "2001:2:ff::1" })),
      live(rec("dup6", 7, { underlay6: "2001:2:ff::50" })),
    ];
    const m = mergePeers(six([filePeer]), "198.19.1.0/24", records);
    expect(m.peers.map((p) => [p.name, p.underlay6])).toEqual([["w2", "2001:2:ff::2"], ["w3", undefined], ["w4", "2001:2:ff::4"], ["w5", undefined]]);
    expect(Object.fromEntries(m.dropped.map((d) => [d.node, d.reason]))).toEqual({
      mine6: "IPv6 underlay 2001:2:ff::1 is this node's",
      dup6: "IPv6 underlay 2001:2:ff::50 is a config peer's",
    });
    const r = validateConfig(composeDocument(six([filePeer]), { endpoints: ["x:1"] }, "198.19.1.0/24", m.peers));
    expect(r.ok && r.config.peers.map((p) => p.underlay6)).toEqual(["2001:2:ff::50", "2001:2:ff::2", undefined, "2001:2:ff::4", undefined]);
    // Without an IPv6 underlay address here, the same records come over IPv4 (mine6 and dup6 too).
    expect(mergePeers(doc(), "198.19.1.0/24", records).peers.map((p) => p.underlay6 ?? "-")).toEqual(["-", "-", "-", "-", "-", "-"]);
  });

  it("etcd.underlay6 needs node.ipv6.underlayAddress and an encapsulation other than direct", () => {
    const cfg = (ipv6: object | undefined, encapsulation = "auto") => validateConfig({ ...doc(), node: { ...doc().node, podCIDR: "198.19.1.0/24", ...(ipv6 ? { ipv6 } : {}) }, etcd: { endpoints: ["x:1"], underlay6: true, encapsulation } });
    expect(cfg({ podCIDR: "2001:2:0:1::/64", underlayAddress: "2001:2:ff::1" }).ok).toBe(true);
    const e1 = cfg({ podCIDR: "2001:2:0:1::/64" });
    expect(!e1.ok && e1.errors).toEqual(["etcd.underlay6: needs node.ipv6.underlayAddress (the address peers would tunnel to)"]);
    const e2 = cfg({ podCIDR: "2001:2:0:1::/64", underlayAddress: "2001:2:ff::1" }, "direct");
    expect(!e2.ok && e2.errors).toEqual(["etcd.underlay6: direct routing goes over the IPv4 underlay: set etcd.encapsulation to vxlan, ipip or auto"]);
  });

  it("leaves out records that clash with this node or with a config peer (the file wins)", () => {
    const filePeer = { name: "static", underlay: "198.18.0.50", podCIDRs: ["198.19.50.0/24"], vtepMac: "0e:00:00:00:00:50" };
    const m = mergePeers(doc([filePeer]), "198.19.1.0/24", [
      live(rec("w1", 1, { podCIDR: "198.19.9.0/24" })), // our own record: skipped silently
      live(rec("static", 7)),
      live(rec("dupunder", 8, { underlay: "198.18.0.50" })),
      live(rec("mine", 9, { underlay: "198.18.0.1" })),
      live(rec("overlap", 10, { podCIDR: "198.19.50.0/25" })),
      live(rec("overlapself", 11, { podCIDR: "198.19.1.0/24" })),
      live(rec("samemac", 12, { vtepMac: "0e:00:00:00:00:50" })),
      live(rec("ok", 13)),
    ]);
    expect(m.peers.map((p) => p.name)).toEqual(["ok"]);
    expect(Object.fromEntries(m.dropped.map((d) => [d.node, d.reason]))).toEqual({
      static: "a config peer is also called static",
      dupunder: "underlay 198.18.0.50 is a config peer's",
      mine: "underlay 198.18.0.1 is this node's",
      overlap: "pod CIDR 198.19.50.0/25 overlaps 198.19.50.0/24 of config peer static",
      overlapself: "pod CIDR 198.19.1.0/24 overlaps 198.19.1.0/24 of this node",
      samemac: "VTEP MAC 0e:00:00:00:00:50 is a config peer's",
    });
    expect(validateConfig(composeDocument(doc([filePeer]), { endpoints: ["x:1"] }, "198.19.1.0/24", m.peers)).ok).toBe(true);
  });

  it("keeps the newer of two records of one node (its old subnet not expired yet)", () => {
    const m = mergePeers(doc(), "198.19.1.0/24", [live(rec("w2", 2), 5), live(rec("w2", 2, { podCIDR: "198.19.20.0/24" }), 9)]);
    expect(m.peers.map((p) => p.podCIDRs[0])).toEqual(["198.19.20.0/24"]);
    expect(m.dropped).toEqual([{ node: "w2", podCIDR: "198.19.2.0/24", reason: "superseded by a newer record of the same node" }]);
  });

  it("two etcd records with one pod CIDR: the first by name stays", () => {
    const m = mergePeers(doc(), "198.19.1.0/24", [live(rec("b", 2)), live(rec("a", 3, { podCIDR: "198.19.2.0/24" }))]);
    expect(m.peers.map((p) => p.name)).toEqual(["a"]);
  });

  it("a record that still makes the config invalid is left out with the error; the other peers go through", () => {
    // The node's explicit overlay address lies in w2's subnet: not a clash mergePeers knows about.
    const d = { ...doc(), node: { ...doc().node, overlayAddress: "198.19.2.1" } };
    const m = mergePeers(d, "198.19.1.0/24", [live(rec("w2", 2)), live(rec("w3", 3))]);
    expect(m.peers.map((p) => p.name)).toEqual(["w2", "w3"]);
    const v = validateMerged(d, { endpoints: ["x:1"] }, "198.19.1.0/24", m, validateConfig);
    expect(v.result.ok && v.result.config.peers.map((p) => p.name)).toEqual(["w3"]);
    expect(v.merged.dropped).toEqual([{ node: "w2", podCIDR: "198.19.2.0/24", reason: 'node.overlayAddress: "198.19.2.1" lies in 198.19.2.0/24 of peer w2' }]);
    // An error of the file's own stays an error.
    const broken = { ...doc(), tunnel: { vni: 0 } };
    const b = validateMerged(broken, { endpoints: ["x:1"] }, "198.19.1.0/24", mergePeers(broken, "198.19.1.0/24", [live(rec("w3", 3))]), validateConfig);
    expect(!b.result.ok && b.result.errors).toEqual(["tunnel.vni: 0 is not an integer in 1..16777215"]);
  });

  it("the command line's endpoints and prefix go on top of the file's etcd section", () => {
    expect(etcdSection({}, undefined)).toBeUndefined();
    expect(etcdSection({}, { endpoints: ["http://a:1"] })).toEqual({ endpoints: ["http://a:1"] });
    expect(etcdSection({ etcd: { endpoints: ["http://b:2"], leaseTTL: 5 } }, { prefix: "/x" })).toEqual({ endpoints: ["http://b:2"], leaseTTL: 5, prefix: "/x" });
  });
});

describe("etcd records", () => {
  it("keys round-trip and other keys are not subnets", () => {
    expect(subnetKey("/wasm-overlay/", "198.19.5.0/24")).toBe("/wasm-overlay/subnets/198.19.5.0-24");
    expect(subnetOfKey("/wasm-overlay", "/wasm-overlay/subnets/198.19.5.0-24")).toBe("198.19.5.0/24");
    expect(subnetOfKey("/wasm-overlay", "/wasm-overlay/nodes/w1")).toBeUndefined();
    expect(subnetOfKey("/wasm-overlay", "/wasm-overlay/subnets/garbage")).toBeUndefined();
  });

  it("a record is parsed, normalised and checked against its key; junk is refused with a reason", () => {
    const r = parseRecord("198.19.2.0/24", JSON.stringify({ ...rec("w2", 2), vtepMac: "0E-00-00-00-00-02" }));
    expect(r.ok && r.record.vtepMac).toBe("0e:00:00:00:00:02");
    expect(parseRecord("198.19.3.0/24", JSON.stringify(rec("w2", 2)))).toEqual({ ok: false, reason: "record says 198.19.2.0/24, key says 198.19.3.0/24" });
    expect(parseRecord("198.19.2.0/24", "{").ok).toBe(false);
    const bad = parseRecord("198.19.2.0/24", JSON.stringify({ ...rec("w2", 2), underlay: "300.1.1.1", encapsulation: "gre" }));
    expect(bad.ok).toBe(false);
    expect(!bad.ok && bad.reason).toMatch(/underlay.*encapsulation/);
  });
});

describe("check-config of a node whose pod CIDR comes from etcd", () => {
  const dir = mkdtempSync(join(tmpdir(), "wo-etcd-check-"));
  const write = (name: string, text: string) => {
    const f = join(dir, name);
    writeFileSync(f, text);
    return f;
  };
  const node = "node: { name: w1, underlay: { address: 198.18.0.11, prefixLength: 24 } }\n";
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it("checks with the first subnet an empty cluster would lease, around the config peers", () => {
    const f = write("a.yaml", node + "etcd: { endpoints: [http://198.18.0.1:2379], network: 198.19.0.0/16 }\n" +
      "peers: [{ name: s, underlay: 198.18.0.50, podCIDRs: [198.19.0.0/24], vtepMac: '0e:00:00:00:00:50' }]\n");
    const c = checkConfigFile(f);
    expect(c.result.ok && c.result.config.node.podCIDR).toBe("198.19.1.0/24");
    expect(c.leased?.checkedWith).toBe("198.19.1.0/24");
  });

  it("without etcd.network the rest is still checked; without etcd podCIDR stays required; errors elsewhere are reported", () => {
    const c = checkConfigFile(write("b.yaml", node + "etcd: { endpoints: [http://198.18.0.1:2379] }\n"));
    expect(c.result.ok).toBe(true);
    expect(c.leased?.note).toMatch(/<prefix>\/config/);
    expect(checkConfigFile(write("c.yaml", node)).result).toEqual({ ok: false, errors: ["node.podCIDR: is required"] });
    const bad = checkConfigFile(write("d.yaml", node + "etcd: { endpoints: [nope], leaseTTL: 1 }\n"));
    expect(!bad.result.ok && bad.result.errors).toEqual([
      'etcd.endpoints[0]: "nope" is not an etcd endpoint like "http://198.18.0.1:2379" (TLS is not supported yet)',
      "etcd.leaseTTL: 1 is not an integer in 2..3600",
    ]);
    expect(checkConfigFile(write("e.yaml", node + "etcd: { endpoints: [http://a:1] }\n"), undefined).result.ok).toBe(true);
    expect(checkConfigFile(write("f.yaml", node), { endpoints: ["http://a:1"] }).result.ok).toBe(true);
  });
});

describe("dual-stack membership: a node's IPv6 subnet has its IPv4 subnet's index", () => {
  it("maps subnet i of the IPv4 network to subnet i of the IPv6 one", () => {
    expect(ipv6SubnetFor("198.19.0.0/16", 24, "198.19.5.0/24", "2001:2::/48", 64)).toBe("2001:2:0:5::/64");
    expect(ipv6SubnetFor("198.19.0.0/16", 24, "198.19.0.0/24", "2001:2::/48", 64)).toBe("2001:2::/64");
    expect(ipv6SubnetFor("198.19.0.0/16", 24, "198.19.255.0/24", "2001:2::/48", 64)).toBe("2001:2:0:ff::/64");
    // (198.19.0.64 - 198.18.0.0) / 64 = 1025 = 0x401, the /80's last 16 bits.
    expect(ipv6SubnetFor("198.18.0.0/15", 26, "198.19.0.64/26", "2001:2::/48", 80)).toBe("2001:2:0:0:401::/80");
    // Distinct IPv4 subnets, distinct IPv6 ones.
    const all = [...subnetsOf("198.19.0.0/22", 26)].map((c) => ipv6SubnetFor("198.19.0.0/22", 26, c, "2001:2::/56", 64));
    expect(new Set(all).size).toBe(16);
  });
  it("refuses an IPv6 network with fewer subnets than the IPv4 one", () => {
    expect(() => ipv6SubnetFor("198.19.0.0/16", 24, "198.19.5.0/24", "2001:2::/60", 64)).toThrow(/2\^4 \/64 subnets, fewer than the 2\^8 \/24s/);
    expect(() => ipv6SubnetFor("198.19.0.0/16", 24, "198.19.5.0/24", "2001:2::/64", 48)).toThrow(/shorter than the IPv6 network/);
  });
  it("records carry the IPv6 subnet; peers get it only when this node runs IPv6", () => {
    const r = parseRecord("198.19.2.0/24", JSON.stringify(rec("w2", 2, { ipv6PodCIDR: "2001:2:0:2::/64" })));
    expect(r.ok && r.record.ipv6PodCIDR).toBe("2001:2:0:2::/64");
    expect(parseRecord("198.19.2.0/24", JSON.stringify(rec("w2", 2, { ipv6PodCIDR: "2001:2:0:2::1/64" }))).ok).toBe(false);
    const peers = [live(rec("w2", 2, { ipv6PodCIDR: "2001:2:0:2::/64" })), live(rec("w3", 3))];
    const six = mergePeers(doc(), "198.19.1.0/24", peers, "2001:2:0:1::/64");
    expect(six.peers.map((p) => p.ipv6)).toEqual([{ podCIDRs: ["2001:2:0:2::/64"] }, undefined]);
    expect(mergePeers(doc(), "198.19.1.0/24", peers).peers.map((p) => p.ipv6)).toEqual([undefined, undefined]);
    const etcd = { endpoints: ["http://198.18.0.1:2379"] };
    const v = validateConfig(composeDocument(doc(), etcd, "198.19.1.0/24", six.peers, "2001:2:0:1::/64"));
    expect(v.ok && v.config.node.ipv6).toEqual({ podCIDR: "2001:2:0:1::/64", overlayAddress: "2001:2:0:1::" });
    expect(v.ok && v.config.peers.map((p) => p.ipv6?.podCIDRs)).toEqual([["2001:2:0:2::/64"], undefined]);
  });
  it("a record whose IPv6 subnet overlaps this node's is left out with the reason", () => {
    const m = mergePeers(doc(), "198.19.1.0/24", [live(rec("w2", 2, { ipv6PodCIDR: "2001:2:0:1::/64" })), live(rec("w3", 3, { ipv6PodCIDR: "2001:2:0:3::/64" }))], "2001:2:0:1::/64");
    const { result, merged } = validateMerged(doc(), { endpoints: ["http://198.18.0.1:2379"] }, "198.19.1.0/24", m, validateConfig, "2001:2:0:1::/64");
    expect(result.ok).toBe(true);
    expect(merged.peers.map((p) => p.name)).toEqual(["w3"]);
    expect(merged.dropped[0]).toMatchObject({ node: "w2" });
    expect(merged.dropped[0].reason).toMatch(/2001:2:0:1::\/64/);
  });
  it("check-config stands in with both subnets", () => {
    const dir = mkdtempSync(join(tmpdir(), "wo-etcd6-"));
    try {
      const f = join(dir, "a.yaml");
      writeFileSync(f, "node: { name: w1, underlay: { address: 198.18.0.11, prefixLength: 24 } }\netcd: { endpoints: [http://198.18.0.1:2379], network: 198.19.0.0/16, ipv6Network: '2001:2::/48' }\n");
      const c = checkConfigFile(f);
      expect(c.result.ok && c.result.config.node.ipv6?.podCIDR).toBe("2001:2::/64");
      expect(c.leased?.checkedWith).toBe("198.19.0.0/24 and 2001:2::/64");
      writeFileSync(f, "node: { name: w1, underlay: { address: 198.18.0.11, prefixLength: 24 } }\netcd: { endpoints: [http://198.18.0.1:2379], network: 198.19.0.0/16, ipv6Network: '2001:2::/60' }\n");
      const bad = checkConfigFile(f);
      expect(!bad.result.ok && bad.result.errors[0]).toMatch(/^etcd\.ipv6Network: .*fewer than/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
