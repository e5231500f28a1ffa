// A fuzz script of mutated bytes: a well-formed client stream (handshake and requests) with
// bits flipped, bytes inserted, deleted, duplicated or set to boundary values. Nothing about
// the answers can be predicted, so the check is only that the server copes: it answers or
// hangs up, and once the client has hung up it closes the connection in bounded time.

import * as P from "../../src/nbd/protocol.js";
import type { SeededRandom } from "../support/random.js";
import type { FuzzSocket } from "./fuzz-socket.js";
import type { FuzzServer } from "./fuzz-target.js";
import { sessionOpeningBytes, type SessionChoice } from "./option-replies.js";
import { FuzzFailure } from "./reply-reader.js";
import { generateRequest, type GeneratedRequest } from "./request-generator.js";
import { expectedTransmissionFlags } from "./request-rules.js";
import type { ScriptStats } from "./request-script.js";
import { requestBytes, requestHeader } from "./wire-encoding.js";

const BOUNDARY_U32 = [0, 1, 4096, 4097, 65536, 65537, 0x7fff_ffff, 0x8000_0000, 0xffff_ffff];

export interface MutationPlan {
  original: Buffer;
  mutated: Buffer;
  mutations: string[];
  cuts: number[];
}

/** Exports nobody models: whatever a mutated stream writes there cannot make another check wrong. */
function unmodeledExport(server: FuzzServer): string {
  return server.kind === "memory" ? "huge" : "base";
}

export function planMutationScript(random: SeededRandom, server: FuzzServer): MutationPlan {
  const structured = random.next() < 0.6;
  const choice: SessionChoice = {
    exportName: unmodeledExport(server),
    structured,
    selectContext: structured && random.next() < 0.7,
    via: random.next() < 0.8 ? "go" : "export-name",
    noZeroes: random.next() < 0.5,
    infoTypes: [],
  };
  const facts = server.exports.get(choice.exportName)!;
  const session = {
    facts,
    structured,
    contextId: choice.selectContext ? 1 : null,
    transmissionFlags: expectedTransmissionFlags(facts.readOnly, structured),
  };
  const requests: GeneratedRequest[] = [];
  for (let i = 0; i < random.below(12); i++) requests.push(generateRequest(random, session, requests));
  const parts = [sessionOpeningBytes(choice), ...requests.map((request) => requestBytes(request.spec))];
  if (random.next() < 0.5) parts.push(requestHeader({ command: P.NBD_CMD_DISC, flags: 0, cookie: 0n, offset: 0n, byteLength: 0 }));
  const original = Buffer.concat(parts);
  const mutations: string[] = [];
  let mutated = Buffer.from(original);
  for (let i = 0; i < 1 + random.below(8); i++) {
    const at = random.below(mutated.length);
    switch (random.below(7)) {
      case 0:
        mutated[at]! ^= 1 << random.below(8);
        mutations.push(`flip a bit at ${at}`);
        break;
      case 1:
        mutated[at] = random.below(256);
        mutations.push(`set byte ${at}`);
        break;
      case 2: {
        const inserted = random.bytes(1 + random.below(32));
        mutated = Buffer.concat([mutated.subarray(0, at), inserted, mutated.subarray(at)]);
        mutations.push(`insert ${inserted.length} bytes at ${at}`);
        break;
      }
      case 3: {
        const removed = 1 + random.below(32);
        mutated = Buffer.concat([mutated.subarray(0, at), mutated.subarray(at + removed)]);
        mutations.push(`delete ${removed} bytes at ${at}`);
        break;
      }
      case 4: {
        const copied = mutated.subarray(at, at + 1 + random.below(64));
        mutated = Buffer.concat([mutated.subarray(0, at), copied, mutated.subarray(at)]);
        mutations.push(`repeat ${copied.length} bytes at ${at}`);
        break;
      }
      case 5: {
        if (at + 4 > mutated.length) break;
        const value = random.pick(BOUNDARY_U32);
        mutated.writeUInt32BE(value, at);
        mutations.push(`set u32 at ${at} to ${value}`);
        break;
      }
      default: {
        mutated = mutated.subarray(0, at);
        mutations.push(`cut at ${at}`);
        break;
      }
    }
    if (mutated.length === 0) mutated = Buffer.from([random.below(256)]);
  }
  const cuts = Array.from({ length: random.below(5) }, () => random.below(mutated.length)).sort((a, b) => a - b);
  return { original, mutated, mutations, cuts };
}

export async function runMutationScript(socket: FuzzSocket, plan: MutationPlan, stats: ScriptStats): Promise<void> {
  socket.sendInPieces(plan.mutated, plan.cuts);
  socket.end();
  stats.cases++;
  stats.requestKinds.set("mutated stream", (stats.requestKinds.get("mutated stream") ?? 0) + 1);
  if (!(await socket.drainUntilClosed())) {
    throw new FuzzFailure(
      `mutated stream (${plan.mutations.join("; ")}): the server did not close the connection after the client hung up`,
    );
  }
}
