// Reading a config file: bytes → YAML/JSON document → validated Config, or a
// list of "field: reason" lines. Nothing here throws on bad input (a missing
// file, invalid YAML, a wrong field are all errors in the result), so the
// daemon can reject a broken reload and keep running on the old config.
import { readFileSync } from "node:fs";
import { extname } from "node:path";
import { parseDocument } from "yaml";
import type { z } from "zod";
import { ConfigSchema, type Config } from "./schema.js";

export type LoadResult = { ok: true; config: Config } | { ok: false; errors: string[] };

/** Issue path → "peers[1].podCIDRs[0]" (empty for the document root). */
export function formatPath(path: ReadonlyArray<PropertyKey>): string {
  let out = "";
  for (const seg of path) {
    if (typeof seg === "number") out += `[${seg}]`;
    else out += (out ? "." : "") + String(seg);
  }
  return out;
}

function describe(value: unknown): string {
  if (value === null) return "null";
  if (Array.isArray(value)) return "a list";
  if (typeof value === "object") return "a mapping";
  if (typeof value === "number" && !Number.isFinite(value)) return `number ${String(value)}`;
  return `${typeof value} ${JSON.stringify(value)}`;
}

/** Zod's generic messages, reworded for someone editing a YAML file. */
function issueMessage(iss: z.core.$ZodRawIssue): string | undefined {
  if (iss.code === "invalid_type") {
    if (iss.input === undefined) return "is required";
    return `expected ${iss.expected === "array" ? "a list" : iss.expected === "object" ? "a mapping" : iss.expected}, got ${describe(iss.input)}`;
  }
  if (iss.code === "unrecognized_keys") {
    const keys = (iss.keys as string[]).map((k) => JSON.stringify(k)).join(", ");
    return `unknown field${iss.keys.length > 1 ? "s" : ""} ${keys}`;
  }
  if (iss.code === "invalid_value" && Array.isArray(iss.values)) {
    return `${JSON.stringify(iss.input)} is not one of ${iss.values.map((v) => JSON.stringify(v)).join(", ")}`;
  }
  return undefined;
}

/** Validate an already-parsed document (e.g. from a test or another source). */
export function validateConfig(doc: unknown): LoadResult {
  try {
    const r = ConfigSchema.safeParse(doc, { error: issueMessage });
    if (r.success) return { ok: true, config: r.data };
    return {
      ok: false,
      errors: r.error.issues.map((iss) => {
        const where = formatPath(iss.path);
        return where ? `${where}: ${iss.message}` : iss.message;
      }),
    };
  } catch (e) {
    // A check that tripped over a value an earlier check already reported.
    return { ok: false, errors: [`config could not be validated: ${(e as Error).message}`] };
  }
}

/**
 * Parse config text. JSON when `filename` ends in .json or the text starts
 * with '{', YAML otherwise (YAML 1.2 is a superset of JSON anyway, but the
 * JSON parser gives clearer messages for JSON). `filename` only labels errors.
 */
export function parseConfigText(text: string, filename = "<config>"): LoadResult {
  if (typeof text !== "string") return { ok: false, errors: [`${filename}: not text`] };
  let doc: unknown;
  const asJson = extname(filename).toLowerCase() === ".json" || /^\s*\{/.test(text);
  if (asJson) {
    try {
      doc = JSON.parse(text);
    } catch (e) {
      return { ok: false, errors: [`${filename}: invalid JSON: ${(e as Error).message}`] };
    }
  } else {
    const parsed = parseDocument(text, { uniqueKeys: true, prettyErrors: true });
    if (parsed.errors.length) {
      return { ok: false, errors: parsed.errors.map((e) => `${filename}: invalid YAML: ${e.message.split("\n")[0]}`) };
    }
    try {
      doc = parsed.toJS({ maxAliasCount: 100 });
    } catch (e) {
      return { ok: false, errors: [`${filename}: invalid YAML: ${(e as Error).message}`] };
    }
  }
  if (doc === null || doc === undefined) return { ok: false, errors: [`${filename}: the file is empty`] };
  if (typeof doc !== "object" || Array.isArray(doc)) {
    return { ok: false, errors: [`${filename}: expected a mapping with node, tunnel, peers…, got ${describe(doc)}`] };
  }
  return validateConfig(doc);
}

/** Read and validate a config file; a missing or unreadable file is an error in the result. */
export function loadConfigFile(path: string): LoadResult {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    const why = err.code === "ENOENT" ? "no such file" : err.code === "EACCES" ? "permission denied" : err.code === "EISDIR" ? "is a directory" : err.message;
    return { ok: false, errors: [`${path}: cannot read config: ${why}`] };
  }
  return parseConfigText(text, path);
}

/** Errors as an indented block for a terminal or a log line. */
export function formatConfigErrors(errors: readonly string[]): string {
  return errors.map((e) => `  - ${e}`).join("\n");
}
