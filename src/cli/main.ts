#!/usr/bin/env node
// overlayd: the node daemon of wasm-overlay and its operator commands.
import { Command, Option } from "commander";
import { deriveTables, queueCount } from "../config/derive.js";
import { get as httpGet } from "node:http";
import { parseListen, u32ToIp } from "../config/net.js";
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
    console.log(`${file}: ok — node ${r.config.node.name}, ${d.peers.length} peers, ${d.routes.length} routes, ${q.queues} tun queue${q.queues === 1 ? "" : "s"} (${q.why})`);
    if (checked.leased) console.log(`  ${checked.leased.note}${checked.leased.checkedWith ? `; checked as ${checked.leased.checkedWith}` : ""}; peers come from etcd too`);
    for (const p of d.peers) console.log(`  peer ${p.name.padEnd(12)} ${u32ToIp(p.underlay).padEnd(15)} ${p.encapsulation.padEnd(6)} ${p.reason}`);
  });

const SHOW = ["status", "routes", "peers", "fdb", "neigh", "stats", "conntrack"] as const;
program
  .command("show")
  .description("query the running daemon: " + SHOW.join(" | "))
  .argument("<what>", SHOW.join("|"))
  .option("--json", "raw JSON")
  .option("--admin <host:port|path>", "admin API of the daemon (host:port or unix socket path)", process.env.OVERLAYD_ADMIN ?? "127.0.0.1:9469")
  .action(async (what: string, opts: { json?: boolean; admin: string }) => {
    if (!(SHOW as readonly string[]).includes(what)) {
      console.error(`unknown "${what}"; one of: ${SHOW.join(", ")}`);
      process.exitCode = 2;
      return;
    }
    let body: unknown;
    try {
      body = JSON.parse(await adminGet(opts.admin, `/${what}`));
    } catch (e) {
      console.error(`cannot reach overlayd at ${opts.admin}: ${(e as Error).message} (is it running? pass --admin host:port)`);
      process.exitCode = 1;
      return;
    }
    if (opts.json) {
      console.log(JSON.stringify(body, null, 2));
      return;
    }
    printTable(what, body);
  });

program
  .command("demo")
  .description("build the seed's three-worker topology in network namespaces, run one overlayd per worker, ping pod to pod over VXLAN, IPIP and direct routing, print a summary and clean up (root)")
  .option("--keep", "leave the topology running until Ctrl-C")
  .action(async (opts: { keep?: boolean }) => {
    const { runDemo } = await import("../demo/demo.js");
    process.exitCode = await runDemo({ keep: opts.keep });
  });

/** GET `path` from the admin API at "host:port" or a unix socket path. */
function adminGet(admin: string, path: string): Promise<string> {
  const addr = parseListen(admin);
  return new Promise((resolve, reject) => {
    const req = httpGet(
      addr.kind === "unix" ? { socketPath: addr.path, path } : { host: addr.host, port: addr.port, path },
      (res) => {
        let body = "";
        res.setEncoding("utf8");
        res.on("data", (d) => (body += d));
        res.on("end", () => (res.statusCode === 200 ? resolve(body) : reject(new Error(`HTTP ${res.statusCode}: ${body.trim()}`))));
      },
    );
    req.setTimeout(5000, () => req.destroy(new Error("timed out")));
    req.on("error", reject);
  });
}

function printTable(what: string, body: unknown): void {
  if (what === "conntrack") {
    // Like `conntrack -L`: one line per flow, then the count on stderr.
    const c = body as { flows: FlowInfo[]; stats?: { entries: number; capacity: number } };
    const text = formatConntrack(c.flows);
    if (text) process.stdout.write(text.endsWith("\n") ? text : text + "\n");
    console.error(`overlayd: ${c.flows.length} flow entries have been shown${c.stats ? ` (${c.stats.entries} tracked, capacity ${c.stats.capacity})` : ""}.`);
    return;
  }
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
