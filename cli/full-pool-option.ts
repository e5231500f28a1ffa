// `serve --when-full=error|queue[:SECONDS]`: what writes that need a new block do when the
// pool is full. `queue` without seconds waits 60 s, as dm-thin's no_space_timeout.

import { InvalidArgumentError } from "commander";
import type { FullPoolPolicy } from "../src/thin/transactions.js";

export const QUEUE_SECONDS_DEFAULT = 60;
/** An hour: a write held longer has a client that gave up on it long ago. */
export const QUEUE_SECONDS_MAX = 3600;

export function parseFullPoolPolicy(text: string): FullPoolPolicy {
  if (text === "error") return { mode: "error" };
  const match = /^queue(?::(\d+(?:\.\d+)?))?$/.exec(text);
  if (match === null) throw new InvalidArgumentError("use error, queue or queue:SECONDS, e.g. queue:60");
  const seconds = match[1] === undefined ? QUEUE_SECONDS_DEFAULT : Number(match[1]);
  if (!(seconds > 0) || seconds > QUEUE_SECONDS_MAX)
    throw new InvalidArgumentError(`hold writes for more than 0 and at most ${QUEUE_SECONDS_MAX} seconds`);
  return { mode: "queue", timeoutMs: Math.round(seconds * 1000) };
}
