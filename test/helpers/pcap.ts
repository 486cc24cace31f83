// Minimal pcap writer and a tshark runner for independent dissection.
import { execFileSync, spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

export const LINKTYPE_ETHERNET = 1;
export const LINKTYPE_RAW = 101; // raw IPv4/IPv6

export function pcapFile(frames: Uint8Array[], linktype = LINKTYPE_RAW): Uint8Array {
  const hdr = Buffer.alloc(24);
  hdr.writeUInt32LE(0xa1b2c3d4, 0);
  hdr.writeUInt16LE(2, 4);
  hdr.writeUInt16LE(4, 6);
  hdr.writeUInt32LE(65535, 16);
  hdr.writeUInt32LE(linktype, 20);
  const parts: Buffer[] = [hdr];
  frames.forEach((f, i) => {
    const rec = Buffer.alloc(16);
    rec.writeUInt32LE(1_700_000_000 + i, 0);
    rec.writeUInt32LE(f.length, 8);
    rec.writeUInt32LE(f.length, 12);
    parts.push(rec, Buffer.from(f));
  });
  return Buffer.concat(parts);
}

export function haveTshark(): boolean {
  return spawnSync("tshark", ["--version"], { stdio: "ignore" }).status === 0;
}

/** Dissect frames with tshark and return one row of the requested fields per frame. */
export function tsharkFields(frames: Uint8Array[], fields: string[], opts: { linktype?: number; decodeAs?: string[]; prefs?: string[] } = {}): string[][] {
  const dir = mkdtempSync(join(tmpdir(), "wo-pcap-"));
  try {
    const file = join(dir, "f.pcap");
    writeFileSync(file, pcapFile(frames, opts.linktype ?? LINKTYPE_RAW));
    const args = ["-r", file, "-T", "fields", "-E", "separator=|", "-E", "occurrence=a", "-E", "aggregator=,"];
    for (const p of opts.prefs ?? []) args.push("-o", p);
    for (const d of opts.decodeAs ?? []) args.push("-d", d);
    for (const f of fields) args.push("-e", f);
    const out = execFileSync("tshark", args, { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });
    return out.trim().split("\n").map((l) => l.split("|"));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
