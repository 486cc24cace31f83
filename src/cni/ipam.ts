// The built-in IPAM: addresses from the node's pod CIDR, allocated on disk
// under `${dataDir}/` (shared by every network of this plugin on the node:
// they all address from the one pod CIDR) so that separate plugin processes (a
// runtime starts one per ADD, many at once) never hand out one address twice.
//
// How: one file per allocated address, `addresses/<ip>`, created with
// O_CREAT|O_EXCL (`wx`). The kernel makes that create atomic, so of two
// processes trying the same address exactly one wins and the other moves on to
// the next; no lock is held at any time, so there is no stale lock to recover
// after a crash (a plain O_EXCL lock file would need that, a mkdir lock too).
// What a crashed ADD can leave is an allocation without a live container,
// which DEL (the runtime's cleanup after a failed ADD) and GC reclaim.
// The same create guards `attachments/<network>/<key>` (one record per
// container + interface name), so a second ADD of one attachment fails even when both race.
import { createHash } from "node:crypto";
import { closeSync, mkdirSync, openSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync, writeSync } from "node:fs";
import { join } from "node:path";
import { cidrContains, ipToU32, parseCidr, u32ToIp } from "../config/net.js";
import { bigintToIpv6, cidr6Contains, ipv6ToBigint, parseCidr6 } from "../config/net6.js";
import { CniError, ERR } from "./spec.js";

export interface Attachment {
  containerId: string;
  ifname: string;
  /** The allocated address (absent while an ADD is between claiming and allocating). */
  ip?: string;
  /** Dual-stack: the allocated IPv6 address. */
  ip6?: string;
  /** The host side of the veth (routed and bridge mode). */
  hostIf?: string;
  netns?: string;
  mode?: string;
  /** "host-local" when the address came from a delegated IPAM plugin. */
  ipam?: string;
  at?: string;
}

const isCode = (e: unknown, code: string) => (e as NodeJS.ErrnoException)?.code === code;

export class Ipam {
  readonly dir: string;
  constructor(dataDir: string, readonly network: string) {
    this.dir = dataDir;
  }
  private get addrDir() {
    return join(this.dir, "addresses");
  }
  private get attDir() {
    return join(this.dir, "attachments", this.network);
  }

  static key(containerId: string, ifname: string): string {
    return createHash("sha256").update(`${containerId}\0${ifname}`).digest("hex").slice(0, 32);
  }

  private ensureDirs(): void {
    mkdirSync(this.addrDir, { recursive: true, mode: 0o755 });
    mkdirSync(this.attDir, { recursive: true, mode: 0o755 });
  }

  /** Claim the attachment record; throws ALREADY_ATTACHED when it exists. */
  claim(containerId: string, ifname: string): void {
    this.ensureDirs();
    const file = join(this.attDir, Ipam.key(containerId, ifname));
    try {
      const fd = openSync(file, "wx", 0o644);
      writeSync(fd, JSON.stringify({ containerId, ifname, at: new Date().toISOString() } satisfies Attachment));
      closeSync(fd);
    } catch (e) {
      if (isCode(e, "EEXIST")) throw new CniError(ERR.ALREADY_ATTACHED, `container ${containerId} already has interface ${ifname} on this network`);
      throw new CniError(ERR.IO_FAILURE, `cannot write ${file}: ${(e as Error).message}`);
    }
  }

  /** Rewrite the attachment record (atomically) with what ADD set up. */
  record(a: Attachment): void {
    const file = join(this.attDir, Ipam.key(a.containerId, a.ifname));
    const tmp = `${file}.${process.pid}.tmp`;
    writeFileSync(tmp, JSON.stringify({ ...a, at: new Date().toISOString() }));
    renameSync(tmp, file);
  }

  get(containerId: string, ifname: string): Attachment | undefined {
    try {
      return JSON.parse(readFileSync(join(this.attDir, Ipam.key(containerId, ifname)), "utf8")) as Attachment;
    } catch {
      return undefined;
    }
  }

  /** Every attachment record. */
  attachments(): Attachment[] {
    const out: Attachment[] = [];
    for (const n of safeReaddir(this.attDir)) {
      if (n.endsWith(".tmp")) continue;
      try {
        out.push(JSON.parse(readFileSync(join(this.attDir, n), "utf8")) as Attachment);
      } catch {
        // half-written by a crashed ADD: no owner we can name; GC removes it below
        out.push({ containerId: "", ifname: n });
      }
    }
    return out;
  }

  /** Addresses allocated now, with their owners. */
  /** Addresses this network holds now, with their owners (`all`: every network's). */
  addresses(all = false): { ip: string; containerId: string; ifname: string; network: string }[] {
    return safeReaddir(this.addrDir).filter((n) => !n.startsWith(".")).map((ip) => {
      const [containerId = "", ifname = "", network = ""] = safeRead(join(this.addrDir, ip)).split("\n");
      return { ip, containerId, ifname, network };
    }).filter((a) => all || a.network === this.network);
  }

  /**
   * Allocate an address of `range` (inside the pod CIDR) for the attachment:
   * `requested` exactly (it must be free), or the next free one after the
   * last handed out (so a released address is not reused at once). Skips
   * the network and broadcast addresses and `reserved`. Throws TRY_AGAIN_LATER
   * when every address is taken.
   */
  allocate(range: string, reserved: string[], containerId: string, ifname: string, requested?: string): string {
    this.ensureDirs();
    const c = parseCidr(range);
    const size = 2 ** (32 - c.len);
    const first = c.prefix >>> 0;
    const skip = new Set(reserved.map((r) => ipToU32(r)));
    if (size > 2) {
      skip.add(first);
      skip.add((first + size - 1) >>> 0);
    }
    const tryTake = (a: number): boolean => this.take(u32ToIp(a), containerId, ifname);
    if (requested) {
      const a = ipToU32(requested);
      if (!cidrContains(c, a)) throw new CniError(ERR.INVALID_CONFIG, `requested address ${requested} is not in ${range}`);
      if (skip.has(a)) throw new CniError(ERR.INVALID_CONFIG, `requested address ${requested} is reserved (network, broadcast or the node's own)`);
      if (!tryTake(a)) throw new CniError(ERR.INVALID_CONFIG, `requested address ${requested} is already allocated`);
      this.setHint(requested);
      return requested;
    }
    const hint = this.hint();
    const start = hint !== undefined && cidrContains(c, hint) ? ((hint - first + 1) % size) : 0;
    for (let i = 0; i < size; i++) {
      const a = (first + ((start + i) % size)) >>> 0;
      if (skip.has(a)) continue;
      if (tryTake(a)) {
        this.setHint(u32ToIp(a));
        return u32ToIp(a);
      }
    }
    throw new CniError(ERR.TRY_AGAIN_LATER, `no free address in ${range}`, `${this.addresses(true).length} allocated in ${this.addrDir}`);
  }

  /** Create `addresses/<ip>` for the attachment; false when another holds it. */
  private take(ip: string, containerId: string, ifname: string): boolean {
    const file = join(this.addrDir, ip);
    try {
      const fd = openSync(file, "wx", 0o644);
      writeSync(fd, `${containerId}\n${ifname}\n${this.network}\n`);
      closeSync(fd);
      return true;
    } catch (e) {
      if (isCode(e, "EEXIST")) return false;
      throw new CniError(ERR.IO_FAILURE, `cannot write ${file}: ${(e as Error).message}`);
    }
  }

  /**
   * Dual-stack: allocate an IPv6 address of `range` as allocate does, after
   * the last one handed out; never the prefix's first address (the
   * subnet-router anycast address) or `reserved`. A /64 is never scanned
   * whole: at most IPV6_SCAN candidates from the hint (TRY_AGAIN_LATER then).
   */
  allocate6(range: string, reserved: string[], containerId: string, ifname: string, requested?: string): string {
    this.ensureDirs();
    const c = parseCidr6(range);
    const size = 1n << BigInt(128 - c.len);
    const skip = new Set([c.prefix, ...reserved.map((r) => ipv6ToBigint(r))]);
    if (requested) {
      const a = ipv6ToBigint(requested);
      if (!cidr6Contains(c, a)) throw new CniError(ERR.INVALID_CONFIG, `requested address ${requested} is not in ${range}`);
      if (skip.has(a)) throw new CniError(ERR.INVALID_CONFIG, `requested address ${requested} is reserved (the prefix's anycast or the node's own)`);
      const text = bigintToIpv6(a);
      if (!this.take(text, containerId, ifname)) throw new CniError(ERR.INVALID_CONFIG, `requested address ${requested} is already allocated`);
      this.setHint(text, HINT6);
      return text;
    }
    const t = safeRead(join(this.dir, HINT6)).trim();
    const hint = t ? ipv6ToBigint(t) : undefined;
    const start = hint !== undefined && cidr6Contains(c, hint) ? (hint - c.prefix + 1n) % size : 0n;
    const tries = size < BigInt(IPV6_SCAN) ? Number(size) : IPV6_SCAN;
    for (let i = 0n; i < BigInt(tries); i++) {
      const a = c.prefix + ((start + i) % size);
      if (skip.has(a)) continue;
      const text = bigintToIpv6(a);
      if (this.take(text, containerId, ifname)) {
        this.setHint(text, HINT6);
        return text;
      }
    }
    throw new CniError(ERR.TRY_AGAIN_LATER, `no free IPv6 address in ${range} among ${tries} tried`);
  }

  private hint(): number | undefined {
    const t = safeRead(join(this.dir, "last_reserved_ip")).trim();
    return t ? ipToU32(t) : undefined;
  }
  private setHint(ip: string, name = "last_reserved_ip"): void {
    // A hint only: losing a race here just starts the next search elsewhere.
    try {
      const tmp = join(this.dir, `.last.${process.pid}`);
      writeFileSync(tmp, ip);
      renameSync(tmp, join(this.dir, name));
    } catch {
      // ignore
    }
  }

  /** Free the address `ip` if this attachment owns it. */
  releaseAddress(ip: string, containerId: string, ifname: string): void {
    const file = join(this.addrDir, ip);
    const [cid, ifn, net] = safeRead(file).split("\n");
    if (cid === containerId && ifn === ifname && net === this.network) rmSync(file, { force: true });
  }

  /** Release everything of an attachment: its address(es) and its record. Idempotent. */
  release(containerId: string, ifname: string): Attachment | undefined {
    const a = this.get(containerId, ifname);
    if (a?.ip6) this.releaseAddress(a.ip6, containerId, ifname);
    if (a?.ip) this.releaseAddress(a.ip, containerId, ifname);
    else for (const x of this.addresses()) if (x.containerId === containerId && x.ifname === ifname) this.releaseAddress(x.ip, containerId, ifname);
    rmSync(join(this.attDir, Ipam.key(containerId, ifname)), { force: true });
    return a;
  }

  /** GC: release every attachment and address not in `valid`; returns the records released. */
  gc(valid: { containerID: string; ifname: string }[]): Attachment[] {
    const keep = new Set(valid.map((v) => `${v.containerID}\0${v.ifname}`));
    const gone: Attachment[] = [];
    for (const a of this.attachments()) {
      if (keep.has(`${a.containerId}\0${a.ifname}`)) continue;
      if (!a.containerId) rmSync(join(this.attDir, a.ifname), { force: true });
      else gone.push(this.release(a.containerId, a.ifname) ?? a);
    }
    for (const x of this.addresses()) if (!keep.has(`${x.containerId}\0${x.ifname}`)) rmSync(join(this.addrDir, x.ip), { force: true });
    return gone;
  }
}

/** Where allocate6 keeps its hint (the IPv4 one is last_reserved_ip, as host-local's). */
const HINT6 = "last_reserved_ip6";
/** Candidates allocate6 tries from its hint before it gives up. */
const IPV6_SCAN = 65536;

function safeReaddir(dir: string): string[] {
  try {
    return readdirSync(dir);
  } catch {
    return [];
  }
}
function safeRead(file: string): string {
  try {
    return readFileSync(file, "utf8");
  } catch {
    return "";
  }
}
