// `thinp serve`'s log on stderr: a text line for people, or with --log-format=json one JSON
// object per line (time, level, msg, then any structured fields) for log shippers.

import { InvalidArgumentError } from "commander";

export const LOG_FORMATS = ["text", "json"] as const;
export type LogFormat = (typeof LOG_FORMATS)[number];
export type LogFields = Readonly<Record<string, string | number>>;

export function parseLogFormat(text: string): LogFormat {
  const format = LOG_FORMATS.find((name) => name === text);
  if (format === undefined) throw new InvalidArgumentError(`use ${LOG_FORMATS.join(" or ")}`);
  return format;
}

/** One line, newline included. Fields never replace time, level or msg. */
export function formatLogLine(format: LogFormat, level: string, message: string, fields?: LogFields, now = new Date()): string {
  const time = now.toISOString();
  if (format === "text") return `${time} ${level} ${message}\n`;
  const fixed = { time, level, msg: message };
  // Assigned twice so the three come first and a field of the same name cannot replace them.
  return JSON.stringify(Object.assign({ ...fixed }, fields, fixed)) + "\n";
}
