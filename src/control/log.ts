// The control plane's logger: pino, JSON lines on stdout (or a given stream),
// level from the caller (CLI flag / config), else $LOG_LEVEL, else info.
import { pino, type DestinationStream, type Logger } from "pino";

export type { Logger };

export const LEVELS = ["trace", "debug", "info", "warn", "error", "fatal", "silent"] as const;
export type Level = (typeof LEVELS)[number];

function isLevel(s: string | undefined): s is Level {
  return s !== undefined && (LEVELS as readonly string[]).includes(s);
}

export interface LoggerOptions {
  /** Log level; when absent or not a level, $LOG_LEVEL, then "info". */
  level?: string;
  /** `name` field on every line (default "overlayd"). */
  name?: string;
  /** Where lines go (default stdout); tests pass a stream to capture them. */
  destination?: DestinationStream;
}

/** The level `createLogger` would pick for these options and environment. */
export function resolveLevel(level?: string, env: NodeJS.ProcessEnv = process.env): Level {
  if (isLevel(level)) return level;
  const fromEnv = env.LOG_LEVEL?.toLowerCase();
  return isLevel(fromEnv) ? fromEnv : "info";
}

/**
 * A pino logger for overlayd. Errors go under `err` (pino's serializer);
 * bigints (MACs, counters) come out as JSON numbers (pino's stringifier).
 */
export function createLogger(opts: LoggerOptions = {}): Logger {
  const options = {
    name: opts.name ?? "overlayd",
    level: resolveLevel(opts.level),
    serializers: { err: pino.stdSerializers.err },
  };
  return opts.destination ? pino(options, opts.destination) : pino(options);
}
