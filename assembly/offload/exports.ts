// Tun offloads (virtio_net_hdr, TSO and GRO in software), exported for the
// I/O layer and for tests.
export {
  VNET_HDR_LEN, VNET_F_NEEDS_CSUM, VNET_F_DATA_VALID, VNET_GSO_NONE, VNET_GSO_TCPV4, VNET_GSO_UDP, VNET_GSO_TCPV6, VNET_GSO_UDP_L4,
  VNET_GSO_ECN, checkVnet, emitVnet, vnetFlags, vnetGsoType, vnetHdrLen, vnetGsoSize, vnetCsumStart, vnetCsumOffset,
} from "./vnet";
export { tsoSegment, tsoSegmentCount, tsoSegmentMaxLen, vnetFinishChecksum } from "./tso";
export { groCoalesce, GRO_MAX_BATCH, GRO_OPEN_RUNS, GRO_MAX_FRAME } from "./gro";

