// Which subnet of the cluster network a node should try to lease, in order.
// Pure: the caller lists etcd, asks for candidates, and tries each with a
// transaction that succeeds only if the subnet key does not exist yet, so two
// nodes racing for one subnet cannot both get it (the loser moves on).
import { cidrOverlaps, formatCidr, maskOf, parseCidr, tryParseCidr } from "../config/net.js";
import { formatCidr6, parseCidr6 } from "../config/net6.js";

export interface AllocationInput {
  network: string;
  subnetLength: number;
  /** This node's name. */
  name: string;
  /** The subnet this node had before (its `<prefix>/nodes/<name>` key), tried first. */
  previous?: string;
  /** Subnets leased now (live keys), with the node holding each. */
  live: ReadonlyMap<string, string>;
  /** Subnets other nodes had before (their nodes/ keys): handed out only when nothing else is left. */
  reserved: ReadonlyMap<string, string>;
  /** Prefixes that are not the cluster's to give (static peers' pod CIDRs from the config file). */
  avoid: readonly string[];
  /** At most this many candidates (default 16). */
  limit?: number;
}

/** Every subnet of `network` with prefix length `len`, in address order (lazily: a /8 of /30s is 4M). */
export function* subnetsOf(network: string, len: number): Generator<string> {
  const net = parseCidr(network);
  if (len < net.len) return;
  const count = 2 ** (len - net.len);
  const step = 2 ** (32 - len);
  const base = (net.prefix & maskOf(net.len)) >>> 0;
  for (let i = 0; i < count; i++) yield formatCidr({ prefix: (base + i * step) >>> 0, len });
}

/**
 * Dual-stack: a node's IPv6 subnet, the `/len6` of `network6` with the same
 * index as its IPv4 `cidr` among the `/len` subnets of `network` (198.19.5.0/24
 * of 198.19.0.0/16 is subnet 5: 2001:2:0:5::/64 of 2001:2::/48). IPv4 leases
 * are unique, so these are too, without a second lease. Throws when the IPv6
 * network has fewer subnets than the IPv4 one could hand out.
 */
export function ipv6SubnetFor(network: string, len: number, cidr: string, network6: string, len6: number): string {
  const n = parseCidr(network);
  const c = parseCidr(cidr);
  const n6 = parseCidr6(network6);
  if (len6 < n6.len) throw new Error(`IPv6 subnet length /${len6} is shorter than the IPv6 network ${network6}`);
  if (len6 - n6.len < len - n.len) {
    throw new Error(`IPv6 network ${network6} has 2^${len6 - n6.len} /${len6} subnets, fewer than the 2^${len - n.len} /${len}s of ${network}`);
  }
  const index = BigInt((((c.prefix >>> 0) - (n.prefix >>> 0)) >>> 0) / 2 ** (32 - len));
  return formatCidr6({ prefix: n6.prefix + (index << BigInt(128 - len6)), len: len6 });
}

/** Whether `cidr` is a subnet of `network` of exactly `len` bits. */
export function isSubnetOf(cidr: string, network: string, len: number): boolean {
  const c = tryParseCidr(cidr);
  if (!c.ok || c.value.len !== len) return false;
  const n = parseCidr(network);
  return n.len <= len && cidrOverlaps(n, c.value);
}

/**
 * Candidates in the order to try them: the previous subnet when it is still
 * ours to take (free, or leased by a node of our own name: our previous
 * process, whose lease has not run out yet); then free subnets nobody had;
 * then free subnets another node had before (stale reservations), so a
 * cluster that churns through names still finds room. Never a live subnet of
 * another node, never one overlapping `avoid`.
 */
export function subnetCandidates(input: AllocationInput): string[] {
  const limit = input.limit ?? 16;
  const usable = (s: string) => !input.avoid.some((a) => tryParseCidr(a).ok && cidrOverlaps(a, s));
  const out: string[] = [];
  const prev = input.previous;
  if (prev !== undefined && isSubnetOf(prev, input.network, input.subnetLength) && usable(prev)) {
    const holder = input.live.get(prev);
    if (holder === undefined || holder === input.name) out.push(prev);
  }
  const stale: string[] = [];
  for (const s of subnetsOf(input.network, input.subnetLength)) {
    if (out.length >= limit) break;
    if (s === prev || input.live.has(s) || !usable(s)) continue;
    const owner = input.reserved.get(s);
    if (owner !== undefined && owner !== input.name) {
      if (stale.length < limit) stale.push(s);
      continue;
    }
    out.push(s);
  }
  return [...out, ...stale].slice(0, limit);
}
