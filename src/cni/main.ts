#!/usr/bin/env node
// wasm-overlay-cni: the CNI plugin executable (install as /opt/cni/bin/wasm-overlay).
// A runtime runs it with CNI_COMMAND & co. in the environment and the network
// config on stdin; see src/cni/plugin.ts.
import { readFileSync } from "node:fs";
import { run } from "./plugin.js";

let stdin = "";
if (process.env.CNI_COMMAND !== "VERSION") {
  try {
    stdin = readFileSync(0, "utf8");
  } catch {
    stdin = "";
  }
}
const out = run(process.env, stdin);
process.stdout.write(out.stdout, () => process.exit(out.code));
