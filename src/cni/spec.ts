// The CNI protocol as a plugin sees it (CNI spec 1.1.0, accepting 0.4.0 and
// 1.0.0 configs): the environment a runtime sets, the well-known error codes,
// and the result object in the shape of the config's cniVersion.

export const SPEC_VERSION = "1.1.0";
export const SUPPORTED_VERSIONS = ["0.4.0", "1.0.0", "1.1.0"] as const;
export type CniVersion = (typeof SUPPORTED_VERSIONS)[number];

/** Well-known error codes (0-99 are the spec's). */
export const ERR = {
  INCOMPATIBLE_VERSION: 1,
  UNSUPPORTED_FIELD: 2,
  UNKNOWN_CONTAINER: 3,
  INVALID_ENV: 4,
  IO_FAILURE: 5,
  DECODE: 6,
  INVALID_CONFIG: 7,
  TRY_AGAIN_LATER: 11,
  NOT_AVAILABLE: 50,
  NOT_AVAILABLE_LIMITED: 51,
  /** Plugin specific (100+): the attachment already exists (ADD twice). */
  ALREADY_ATTACHED: 100,
  /** Plugin specific: setting up the interfaces failed. */
  PLUMBING: 101,
  /** Plugin specific: CHECK found the attachment not as ADD left it. */
  CHECK_FAILED: 102,
} as const;

/** An error the plugin reports as the spec's error object on stdout. */
export class CniError extends Error {
  constructor(readonly code: number, msg: string, readonly details?: string) {
    super(msg);
  }
  toJSON(cniVersion: string) {
    return { cniVersion, code: this.code, msg: this.message, ...(this.details ? { details: this.details } : {}) };
  }
}

export const VERBS = ["ADD", "DEL", "CHECK", "VERSION", "STATUS", "GC"] as const;
export type Verb = (typeof VERBS)[number];

/** The CNI_* variables, checked for the verb (missing ones are error 4). */
export interface CniEnv {
  command: Verb;
  containerId: string;
  netns?: string;
  ifname: string;
  args: Record<string, string>;
  path: string[];
}

export function parseEnv(env: NodeJS.ProcessEnv): CniEnv {
  const command = env.CNI_COMMAND as Verb;
  if (!command) throw new CniError(ERR.INVALID_ENV, "CNI_COMMAND is not set");
  if (!VERBS.includes(command)) throw new CniError(ERR.INVALID_ENV, `unknown CNI_COMMAND ${JSON.stringify(command)}`);
  const attach = command === "ADD" || command === "DEL" || command === "CHECK";
  const need = (name: string) => {
    const v = env[name];
    if (attach && !v) throw new CniError(ERR.INVALID_ENV, `${name} is required for ${command}`);
    return v ?? "";
  };
  const containerId = need("CNI_CONTAINERID");
  if (containerId && !/^[A-Za-z0-9][A-Za-z0-9_.-]*$/.test(containerId)) {
    throw new CniError(ERR.INVALID_ENV, `CNI_CONTAINERID ${JSON.stringify(containerId)}: letters, digits, _ . - only`);
  }
  const ifname = need("CNI_IFNAME");
  if (ifname && (ifname.length > 15 || !/^[^\s/:]+$/.test(ifname) || ifname === "." || ifname === "..")) {
    throw new CniError(ERR.INVALID_ENV, `CNI_IFNAME ${JSON.stringify(ifname)} is not a valid interface name`);
  }
  // DEL must work without a netns (it may be gone already).
  const netns = command === "DEL" ? env.CNI_NETNS || undefined : attach ? need("CNI_NETNS") : undefined;
  const args: Record<string, string> = {};
  for (const kv of (env.CNI_ARGS ?? "").split(";").filter(Boolean)) {
    const i = kv.indexOf("=");
    if (i <= 0) throw new CniError(ERR.INVALID_ENV, `CNI_ARGS: ${JSON.stringify(kv)} is not KEY=VALUE`);
    args[kv.slice(0, i)] = kv.slice(i + 1);
  }
  const path = (env.CNI_PATH ?? "").split(":").filter(Boolean);
  return { command, containerId, netns, ifname, args, path };
}

/** One interface, address and route of a result, as the plugin builds them. */
export interface Result {
  interfaces: { name: string; mac?: string; mtu?: number; sandbox?: string }[];
  ips: { address: string; gateway?: string; interface?: number }[];
  routes: { dst: string; gw?: string }[];
  dns?: Record<string, unknown>;
}

/** The result in the shape of `cniVersion` (0.4.0 adds ips[].version; mtu only from 1.1.0). */
export function formatResult(cniVersion: string, r: Result): Record<string, unknown> {
  const v11 = cniVersion === "1.1.0";
  return {
    cniVersion,
    interfaces: r.interfaces.map((i) => (v11 ? i : { name: i.name, mac: i.mac, sandbox: i.sandbox })),
    ips: r.ips.map((ip) => (cniVersion === "0.4.0" ? { version: ip.address.includes(":") ? "6" : "4", ...ip } : ip)),
    routes: r.routes,
    dns: r.dns ?? {},
  };
}
