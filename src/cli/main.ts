#!/usr/bin/env node
// overlayd: the node daemon of wasm-overlay and its operator commands.
import { Command, Option } from "commander";
import { deriveTables, queueCount } from "../config/derive.js";
import { readFileSync } from "node:fs";
import { request as httpRequest } from "node:http";
import { parse as parseYaml } from "yaml";
import { parseListen, u32ToIp } from "../config/net.js";
import { adminSocketPath } from "../config/schema.js";
import { createLogger } from "../control/log.js";
import { Daemon } from "../daemon/daemon.js";
import { checkConfigFile } from "../membership/check.js";
import { formatConntrack, type FlowInfo } from "../control/conntrack.js";

const program = new Command();
program
  .name("overlayd")
  .description(
    "wasm-overlay node daemon: a VXLAN/IPIP overlay for Kubernetes-style pod networks, with the packet path in WebAssembly.\n" +
      "Typical use: `overlayd check-config node.yaml`, then `sudo overlayd run --config node.yaml`, then `overlayd show peers`.",
  )
  .version("0.1.0");

program
  .command("run")
  .description("run the daemon on this node (root): creates the tun/tap device, opens UDP 4789 and raw IPIP sockets, installs routes")
  .requiredOption("-c, --config <file>", "node config (YAML or JSON); see examples/")
  .option("--no-watch", "do not reload when the config file changes (SIGHUP still reloads)")
  .option("--etcd-endpoints <urls>", "cluster membership from etcd: lease a pod CIDR, publish this node, learn peers (comma-separated, e.g. http://10.0.0.1:2379)")
  .option("--etcd-prefix <prefix>", "etcd key prefix (default /wasm-overlay, or the config's etcd.prefix)")
  .addOption(new Option("--log-level <level>", "log level").choices(["trace", "debug", "info", "warn", "error"]))
  .action(async (opts: { config: string; watch: boolean; logLevel?: string; etcdEndpoints?: string; etcdPrefix?: string }) => {
    const log = createLogger({ level: opts.logLevel });
    // Installed before start-up, so a signal in the middle of it undoes
    // what was set up so far; any unexpected error anywhere becomes "log,
    // clean up, exit non-zero" (a supervisor restarts us; the next start
    // reclaims what a cleanup could not remove).
    let stopping: Promise<void> | undefined;
    const shutdown = (code: number, why: string) => {
      if (stopping) return;
      log[code ? "error" : "info"]({ reason: why }, "shutting down");
      setTimeout(() => process.exit(code || 1), 15_000).unref(); // a stop that hangs must not keep us
      stopping = daemon.stop().catch((e) => log.error({ err: e }, "stopping")).finally(() => process.exit(code));
    };
    const daemon: Daemon = new Daemon({
      configPath: opts.config,
      log,
      watchConfig: opts.watch,
      logLevelFixed: opts.logLevel !== undefined,
      etcd: opts.etcdEndpoints || opts.etcdPrefix ? { endpoints: opts.etcdEndpoints?.split(",").map((e) => e.trim()).filter(Boolean), prefix: opts.etcdPrefix } : undefined,
      // Without its data path the node is down: clean up and exit non-zero.
      onFatal: (why) => shutdown(1, why),
    });
    process.on("SIGTERM", () => shutdown(0, "SIGTERM"));
    process.on("SIGINT", () => shutdown(0, "SIGINT"));
    process.on("SIGHUP", () => void daemon.reload("SIGHUP"));
    process.on("uncaughtException", (e) => {
      log.fatal({ err: e }, "unexpected error");
      shutdown(1, "uncaught exception");
    });
    process.on("unhandledRejection", (e) => {
      log.fatal({ err: e }, "unexpected error (unhandled rejection)");
      shutdown(1, "unhandled rejection");
    });
    try {
      await daemon.start();
    } catch (e) {
      if (stopping) return; // a signal stopped the start-up
      log.error((e as Error).message);
      process.exitCode = 1;
      return;
    }
    // Test-only (test/robust-node.test.ts): an error from nowhere once running,
    // to check the handlers above. Never set it in production.
    const inject = process.env.OVERLAYD_TEST_THROW;
    if (inject === "uncaught") setImmediate(() => { throw new Error("injected by OVERLAYD_TEST_THROW"); });
    if (inject === "rejection") void Promise.reject(new Error("injected by OVERLAYD_TEST_THROW"));
  });

program
  .command("cleanup")
  .description("remove everything a dead overlayd left on this node (device, proto 79 routes, NAT rules and tc filters, reserved ports and sysctls from its install record); refuses while overlayd runs")
  .option("-c, --config <file>", "node config: gives node.stateDir, the device and the underlay device (default /run/wasm-overlay, wo0)")
  .action(async (opts: { config?: string }) => {
    const { reclaim, reclaimTarget, DEFAULT_TARGET } = await import("../daemon/reclaim.js");
    let target = DEFAULT_TARGET;
    if (opts.config) {
      const r = checkConfigFile(opts.config).result;
      if (!r.ok) {
        console.error(`${opts.config}: invalid`);
        for (const e of r.errors) console.error("  " + e);
        process.exitCode = 1;
        return;
      }
      target = reclaimTarget(r.config);
    }
    try {
      const removed = reclaim(target, undefined, { devices: true, sweepAll: true });
      for (const x of removed) console.log(`removed ${x}`);
      console.log(removed.length ? `overlayd cleanup: ${removed.length} removed` : "overlayd cleanup: nothing to remove");
    } catch (e) {
      console.error(`overlayd cleanup: ${(e as Error).message}`);
      process.exitCode = 1;
    }
  });

program
  .command("check-config")
  .description("validate a config file and print the tables it yields; exit 1 on errors")
  .argument("<file>")
  .option("--json", "print the derived tables as JSON")
  .action((file: string, opts: { json?: boolean }) => {
    // A pod CIDR left to etcd is checked with the subnet an empty cluster would lease.
    const checked = checkConfigFile(file);
    const r = checked.result;
    if (!r.ok) {
      console.error(`${file}: invalid`);
      for (const e of r.errors) console.error("  " + e);
      process.exitCode = 1;
      return;
    }
    const d = deriveTables(r.config);
    if (opts.json) {
      console.log(JSON.stringify(d, (_k, v) => (typeof v === "bigint" ? v.toString() : v), 2));
      return;
    }
    const q = queueCount(r.config);
    console.log(`${file}: ok — node ${r.config.node.name}, ${d.peers.length} peers, ${d.routes.length} routes${d.routes6.length ? ` + ${d.routes6.length} IPv6` : ""}, ${q.queues} tun queue${q.queues === 1 ? "" : "s"} (${q.why})`);
    if (checked.leased) console.log(`  ${checked.leased.note}${checked.leased.checkedWith ? `; checked as ${checked.leased.checkedWith}` : ""}; peers come from etcd too`);
    for (const p of d.peers) {
      // IPv6 rides VXLAN to direct peers too (derive.ts), protocol 41 to IPIP ones.
      const six = p.podCIDRs6 ? `; IPv6 ${p.podCIDRs6.join(", ")} over ${p.encapsulation === "ipip" ? `protocol 41` : "vxlan"}` : "";
      const over6 = p.underlay6 ? `; over the IPv6 underlay to ${p.underlay6} (${p.encapsulation === "ipip" ? "IPv4/IPv6 in IPv6" : "VXLAN in UDP/IPv6"})` : "";
      console.log(`  peer ${p.name.padEnd(12)} ${u32ToIp(p.underlay).padEnd(15)} ${p.encapsulation.padEnd(6)} ${p.reason}${six}${over6}`);
    }
    if (d.nat.enabled) console.log(`  ${natSummary(d)}`);
  });

/** check-config's NAT line: what is masqueraded to what, and the service frontends per family. */
function natSummary(d: ReturnType<typeof deriveTables>): string {
  const six = d.nat.ipv6;
  const masq = !d.nat.masquerade ? "masquerade off"
    : `masquerade IPv4 to ${u32ToIp(d.nat.nodeIp)}` + (!six ? "" : six.masquerade ? `, IPv6 to ${six.underlayAddress}` : ", IPv6 not (no node.ipv6.underlayAddress)");
  return `nat: ${masq}; ${d.services.length} IPv4 service frontend${d.services.length === 1 ? "" : "s"}, ${d.services6.length} IPv6`;
}

const SHOW = ["status", "routes", "peers", "fdb", "neigh", "stats", "conntrack", "healthz"] as const;

/** How `show` and `reload` reach the admin API. */
interface AdminOpts {
  admin?: string;
  config?: string;
  tokenFile?: string;
}

/** --admin, else OVERLAYD_ADMIN, else the config's admin.listen (its socket in
 *  node.stateDir by default), else /run/wasm-overlay/admin.sock; the token
 *  file from --token-file, else the config's admin.tokenFile. */
function adminOf(opts: AdminOpts): { admin: string; tokenFile?: string } {
  let fromConfig: { listen?: string; tokenFile?: string; stateDir?: string } = {};
  if (opts.config) {
    // Only the admin address is needed: read it without validating the rest.
    let doc: { admin?: { listen?: string; tokenFile?: string }; node?: { stateDir?: string } } | undefined;
    try {
      doc = parseYaml(readFileSync(opts.config, "utf8"));
    } catch (e) {
      throw new Error(`${opts.config}: ${(e as Error).message}`);
    }
    fromConfig = { listen: doc?.admin?.listen, tokenFile: doc?.admin?.tokenFile, stateDir: doc?.node?.stateDir };
  }
  const admin = opts.admin ?? process.env.OVERLAYD_ADMIN ?? fromConfig.listen ?? adminSocketPath(fromConfig.stateDir ?? "/run/wasm-overlay");
  return { admin, tokenFile: opts.tokenFile ?? (opts.admin || process.env.OVERLAYD_ADMIN ? undefined : fromConfig.tokenFile) };
}

function addAdminOptions(c: Command): Command {
  return c
    .option("-c, --config <file>", "the daemon's config file: its admin.listen (default <node.stateDir>/admin.sock) and admin.tokenFile")
    .option("--admin <path|host:port>", "admin API of the daemon (default: from --config, or $OVERLAYD_ADMIN, or /run/wasm-overlay/admin.sock)")
    .option("--token-file <file>", "bearer token for a TCP admin API");
}

addAdminOptions(
  program
    .command("show")
    .description("query the running daemon: " + SHOW.join(" | "))
    .argument("<what>", SHOW.join("|"))
    .option("--json", "raw JSON")
    .option("--limit <n>", "conntrack: list at most n flows (default: all, fetched a page at a time)"),
).action(async (what: string, opts: AdminOpts & { json?: boolean; limit?: string }) => {
  if (!(SHOW as readonly string[]).includes(what)) {
    console.error(`unknown "${what}"; one of: ${SHOW.join(", ")}`);
    process.exitCode = 2;
    return;
  }
  const limit = opts.limit === undefined ? Infinity : Number(opts.limit);
  if (!(limit >= 1) || (limit !== Infinity && !Number.isInteger(limit))) {
    console.error(`--limit: a whole number above 0, not ${JSON.stringify(opts.limit)}`);
    process.exitCode = 2;
    return;
  }
  let target: { admin: string; tokenFile?: string };
  try {
    target = adminOf(opts);
    if (what === "conntrack") {
      await showConntrack(target, limit, opts.json === true);
      return;
    }
    if (what === "healthz") {
      // 503 is an answer here: print it and exit 1.
      const r = await adminCall(target, "GET", "/healthz", true);
      console.log(opts.json ? r.body.trim() : JSON.stringify(JSON.parse(r.body)));
      if (r.status !== 200) process.exitCode = 1;
      return;
    }
    const body = JSON.parse((await adminCall(target, "GET", `/${what}`)).body);
    if (opts.json) console.log(JSON.stringify(body, null, 2));
    else printTable(what, body);
  } catch (e) {
    failReach(opts, e);
  }
});

addAdminOptions(
  program
    .command("reload")
    .description("reload the running daemon's config (POST /reload; as SIGHUP); exit 1 when it was rejected"),
).action(async (opts: AdminOpts) => {
  try {
    const r = JSON.parse((await adminCall(adminOf(opts), "POST", "/reload")).body) as { ok: boolean; errors: string[] };
    if (r.ok) console.log("reloaded");
    else {
      console.error("reload rejected; the running config stays in force:");
      for (const e of r.errors) console.error("  " + e);
      process.exitCode = 1;
    }
  } catch (e) {
    failReach(opts, e);
  }
});

function failReach(opts: AdminOpts, e: unknown): void {
  let where = "?";
  try {
    where = adminOf(opts).admin;
  } catch {
    // the config's own error is in the message
  }
  console.error(`cannot reach overlayd at ${where}: ${(e as Error).message} (is it running? pass --config FILE or --admin PATH|host:port)`);
  process.exitCode = 1;
}

/** `show conntrack`: follow the cursor page by page, printing as it goes (at most `limit` flows). */
async function showConntrack(target: { admin: string; tokenFile?: string }, limit: number, asJson: boolean): Promise<void> {
  const all: FlowInfo[] = [];
  let shown = 0;
  let cursor: number | null = 0;
  let stats: { entries: number; capacity: number } | undefined;
  while (cursor !== null && shown < limit) {
    const page = Math.min(10_000, limit - shown);
    const r = JSON.parse((await adminCall(target, "GET", `/conntrack?limit=${page}&cursor=${cursor}`)).body) as { flows: FlowInfo[]; next: number | null; stats?: { entries: number; capacity: number } };
    const flows = r.flows.slice(0, limit - shown);
    stats ??= r.stats;
    shown += flows.length;
    cursor = r.next;
    if (asJson) all.push(...flows);
    else {
      const text = formatConntrack(flows);
      if (text) process.stdout.write(text.endsWith("\n") ? text : text + "\n");
    }
  }
  if (asJson) {
    console.log(JSON.stringify({ stats, flows: all }, null, 2));
    return;
  }
  // Like `conntrack -L`: the count on stderr.
  console.error(`overlayd: ${shown} flow entries have been shown${stats ? ` (${stats.entries} tracked, capacity ${stats.capacity})` : ""}.`);
}

program
  .command("demo")
  .description("build the seed's three-worker topology in network namespaces, run one overlayd per worker, ping pod to pod over VXLAN, IPIP and direct routing, print a summary and clean up (root)")
  .option("--keep", "leave the topology running until Ctrl-C")
  .action(async (opts: { keep?: boolean }) => {
    const { runDemo } = await import("../demo/demo.js");
    process.exitCode = await runDemo({ keep: opts.keep });
  });

/** One call to the admin API at a unix socket path or "host:port" (with
 *  the bearer token from the token file, if any). Rejects on a status other
 *  than 200 unless `anyStatus`. */
function adminCall(target: { admin: string; tokenFile?: string }, method: "GET" | "POST", path: string, anyStatus = false): Promise<{ status: number; body: string }> {
  const addr = parseListen(target.admin);
  const headers: Record<string, string> = {};
  if (target.tokenFile) headers.authorization = `Bearer ${readFileSync(target.tokenFile, "utf8").trim()}`;
  return new Promise((resolve, reject) => {
    const req = httpRequest(
      addr.kind === "unix" ? { socketPath: addr.path, path, method, headers } : { host: addr.host, port: addr.port, path, method, headers },
      (res) => {
        let body = "";
        res.setEncoding("utf8");
        res.on("data", (d) => (body += d));
        res.on("end", () => (res.statusCode === 200 || anyStatus ? resolve({ status: res.statusCode ?? 0, body }) : reject(new Error(`HTTP ${res.statusCode}: ${body.trim()}`))));
      },
    );
    req.setTimeout(30_000, () => req.destroy(new Error("timed out")));
    req.on("error", reject);
    req.end();
  });
}

function printTable(what: string, body: unknown): void {
  if (what === "stats") {
    const s = body as { counters: Record<string, string>; io: Record<string, number> };
    for (const [k, v] of Object.entries(s.counters)) if (v !== "0") console.log(`${k.padEnd(28)} ${v}`);
    for (const [k, v] of Object.entries(s.io)) console.log(`io_${k.padEnd(25)} ${v}`);
    const qs = (body as { queues?: Record<string, string>[] }).queues ?? [];
    if (qs.length > 1) for (const q of qs) console.log(`queue ${q.queue}: ` + Object.entries(q).filter(([k]) => k !== "queue").map(([k, v]) => `${k}=${v}`).join(" "));
    return;
  }
  if (!Array.isArray(body)) {
    for (const [k, v] of Object.entries(body as Record<string, unknown>)) console.log(`${k.padEnd(14)} ${typeof v === "object" ? JSON.stringify(v) : v}`);
    return;
  }
  if (body.length === 0) {
    console.log("(none)");
    return;
  }
  const cols = [...new Set(body.flatMap((r) => Object.keys(r as object)))]; // e.g. show peers: leaseAgeSeconds only on etcd peers
  const rows = body.map((r) => cols.map((c) => {
    const v = (r as Record<string, unknown>)[c];
    return v === undefined ? "-" : typeof v === "object" ? JSON.stringify(v) : String(v);
  }));
  const w = cols.map((c, i) => Math.max(c.length, ...rows.map((r) => r[i].length)));
  console.log(cols.map((c, i) => c.padEnd(w[i])).join("  "));
  for (const r of rows) console.log(r.map((v, i) => v.padEnd(w[i])).join("  "));
}

await program.parseAsync(process.argv);
