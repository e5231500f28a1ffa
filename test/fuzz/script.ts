// One fuzz script on one connection: which kind a seed makes, and running it.

import type { SeededRandom } from "../support/random.js";
import type { FuzzSocket } from "./fuzz-socket.js";
import type { FuzzServer } from "./fuzz-target.js";
import { planHandshakeScript, runHandshakeScript } from "./handshake-script.js";
import { planMutationScript, runMutationScript } from "./mutation-script.js";
import { planRequestScript, runRequestScript, type ScriptStats } from "./request-script.js";

export type ScriptKind = "handshake" | "requests" | "mutation";

export function chooseScriptKind(random: SeededRandom): ScriptKind {
  const roll = random.next();
  return roll < 0.45 ? "handshake" : roll < 0.93 ? "requests" : "mutation";
}

/** Runs a script of `kind`; `lane` is the worker's own export ("" for none). Throws on a failure. */
export async function runScript(
  kind: ScriptKind,
  socket: FuzzSocket,
  server: FuzzServer,
  lane: string,
  random: SeededRandom,
  stats: ScriptStats,
): Promise<void> {
  if (kind === "handshake") await runHandshakeScript(socket, server, planHandshakeScript(random, server), stats);
  else if (kind === "requests") await runRequestScript(socket, server, planRequestScript(random, server, lane), stats);
  else await runMutationScript(socket, planMutationScript(random, server), stats);
}
