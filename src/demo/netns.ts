// Network namespaces under one random prefix, for the demo cluster, the
// e2e tests and bench:e2e: create them, link them with veth pairs, run
// commands inside, and delete every one of them again.
import { execFileSync } from "node:child_process";

/** Run a command; its stdout, or an exception carrying stdout/stderr. */
export function sh(args: string[], input?: string, timeoutMs?: number): string {
  return execFileSync(args[0], args.slice(1), {
    encoding: "utf8",
    stdio: [input === undefined ? "ignore" : "pipe", "pipe", "pipe"],
    input,
    timeout: timeoutMs,
  });
}

export class Namespaces {
  private created: string[] = [];

  /** `timeoutMs` bounds every command run through exec(). */
  constructor(readonly prefix: string, private readonly timeoutMs?: number) {}

  /** The full name of namespace `name`. */
  ns(name: string): string {
    return `${this.prefix}-${name}`;
  }

  exec(ns: string, args: string[], input?: string): string {
    return sh(["ip", "netns", "exec", this.ns(ns), ...args], input, this.timeoutMs);
  }

  /** A namespace with its loopback up. */
  add(name: string): void {
    sh(["ip", "netns", "add", this.ns(name)]);
    this.created.push(this.ns(name));
    this.exec(name, ["ip", "link", "set", "lo", "up"]);
  }

  /** A veth pair between two namespaces, named `a` and `b` inside them, both up. */
  veth(nsA: string, a: string, nsB: string, b: string): void {
    const tmpA = `${this.prefix}${Math.random().toString(36).slice(2, 6)}a`.slice(0, 15);
    const tmpB = tmpA.slice(0, -1) + "b";
    sh(["ip", "link", "add", tmpA, "type", "veth", "peer", "name", tmpB]);
    sh(["ip", "link", "set", tmpA, "netns", this.ns(nsA)]);
    sh(["ip", "link", "set", tmpB, "netns", this.ns(nsB)]);
    this.exec(nsA, ["ip", "link", "set", tmpA, "name", a]);
    this.exec(nsB, ["ip", "link", "set", tmpB, "name", b]);
    this.exec(nsA, ["ip", "link", "set", a, "up"]);
    this.exec(nsB, ["ip", "link", "set", b, "up"]);
  }

  /** Delete every namespace add() made, newest first (their veths go with them). */
  deleteAll(): void {
    for (const ns of this.created.reverse()) {
      try {
        sh(["ip", "netns", "del", ns]);
      } catch {
        // already gone
      }
    }
    this.created = [];
  }
}
