// Driving the CNI plugin as a runtime does: CNI_* environment variables, the
// network config on stdin, the result or error object on stdout.
import { spawn } from "node:child_process";
import { fileURLToPath } from "node:url";

export const CNI_MAIN = fileURLToPath(new URL("../../dist/src/cni/main.js", import.meta.url));

export interface CniCall {
  code: number | null;
  stdout: string;
  stderr: string;
  /** stdout parsed, when it is JSON. */
  json?: Record<string, any>;
}

/** Run the plugin (inside network namespace `hostNs` when given) for one verb. */
export function runCni(verb: string, env: Record<string, string | undefined>, conf: unknown, hostNs?: string): Promise<CniCall> {
  const cmd = hostNs ? ["ip", "netns", "exec", hostNs, process.execPath, CNI_MAIN] : [process.execPath, CNI_MAIN];
  const clean: Record<string, string> = { PATH: process.env.PATH ?? "/usr/sbin:/usr/bin:/sbin:/bin" };
  for (const [k, v] of Object.entries({ CNI_COMMAND: verb, CNI_PATH: "/usr/lib/cni", ...env })) if (v !== undefined) clean[k] = v;
  return new Promise((resolve, reject) => {
    const child = spawn(cmd[0], cmd.slice(1), { env: clean, stdio: ["pipe", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d) => (stdout += String(d)));
    child.stderr.on("data", (d) => (stderr += String(d)));
    child.on("error", reject);
    child.on("close", (code) => {
      let json: Record<string, any> | undefined;
      try {
        json = stdout.trim() ? JSON.parse(stdout) : undefined;
      } catch {
        json = undefined;
      }
      resolve({ code, stdout, stderr, json });
    });
    child.stdin.end(typeof conf === "string" ? conf : JSON.stringify(conf));
  });
}
