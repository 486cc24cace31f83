// wasm-overlay data path: the module's exported ABI, and nothing else.
//
// The layers, each importing only from those below it (test/layering.test.ts):
//   wire/      one file per header                               (the ground)
//   tables/    LPM routes, hash tables                           (the ground)
//   nat/       conntrack, NAT rewrites, services                 (a library)
//   offload/   virtio_net_hdr, TSO segmentation, GRO coalescing  (a library)
//   pipeline/  the only place stages are composed:
//     setup.ts      init (every region and scratch), configure
//     ingest.ts     super-frames, UDP GRO trains -> input slots
//     forward.ts    pod side -> route lookup -> encap / direct / ICMP error
//     decap.ts      underlay (UDP 4789 / IP proto 4, 41; in IPv6 too) -> validation -> pod side
//     nat.ts        the NAT stage forward.ts and decap.ts call
//     wholeframe.ts a TCP super-frame in one VXLAN packet, both ways
//     egress.ts     verdicts -> I/O lists, vnet headers, GRO to the tun
//
// Control-plane calls (init, configure, table writes) happen between batches,
// on the thread that runs the batches; batch calls never allocate or throw.
export * from "./tables/exports";
export * from "./wire/exports";
export * from "./nat/exports";
export * from "./offload/exports";
export {
  init, configure, configure6, configureUnderlay6, slotBase, slotSize, metaBase, batchMax, countersBase, neighTable, fdbTable, peerAddrTable,
  nexthopCapacity, peerCapacity, memoryInUse, abiMetaSize, abiHeadroom, abiCounterCount, abiReasonCount,
  abiVerdictCount, allocScratch,
} from "./pipeline/setup";
export { ingestSuperframe, ingestDatagrams, ingestEncapSuperframe, offloadSetup, rearmBatch } from "./pipeline/ingest";
export { processPodBatch } from "./pipeline/forward";
export { processVxlanBatch, processIpipBatch, processIp6TunnelBatch } from "./pipeline/decap";
export { collectVerdicts, collectVerdictsGso, prependVnetNone, groDeviceBatch } from "./pipeline/egress";
export {
  gsoSetup, gsoSegments, gsoRepresentative, gsoBuild, TNL_PREFIX, TNL_VNET_LEN, encapRxSetup, encapRepresentative,
  encapBuild, ENCAP_WRITE_AT,
} from "./pipeline/wholeframe";
export { setNexthop, setPeer, setPeer6, clearPeer } from "./pipeline/peers";
export { setClock, setIcmpRateLimit } from "./pipeline/state";
export { pmtuIcmpBatch, setPeerPmtu, peerPmtu } from "./pipeline/pmtu";
export { natConfigure, natSetNow, natNow, translateIcmpError } from "./pipeline/nat";
export { natConfigure6, ct6Pin, ct6Unpin, ct6Addr } from "./pipeline/nat6";
export { svcSetup, svcClear, svcSetBackend, svcAdd, svcCount } from "./nat/service";
