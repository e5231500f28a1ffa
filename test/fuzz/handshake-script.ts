// A fuzz script in option haggling: client flags (sometimes unknown or cut short), a run of
// generated options sent in one pipelined stream, then an ending: hang up, hang up in the
// middle of an option, or enter transmission and read, disconnect, or send garbage.

import * as P from "../../src/nbd/protocol.js";
import type { SeededRandom } from "../support/random.js";
import type { FuzzSocket } from "./fuzz-socket.js";
import type { FuzzServer } from "./fuzz-target.js";
import { endsHaggling, generateOption, type HaggleState, type OptionStep } from "./option-generator.js";
import { checkInfoReplies, readGreeting, readOptionReplies, readOptionReply } from "./option-replies.js";
import { FuzzFailure, ReplyReader } from "./reply-reader.js";
import { randomU64 } from "./request-generator.js";
import { expectedTransmissionFlags } from "./request-rules.js";
import type { ScriptStats } from "./request-script.js";
import { infoRequestData, optionBytes, requestHeader, u32 } from "./wire-encoding.js";

type FlagsCase = "valid" | "unknown-bits" | "cut-short";
type Ending =
  /** The server must hang up by itself (the last option ends the handshake, or broke a rule). */
  | { kind: "none" }
  | { kind: "end" | "destroy" }
  | { kind: "cut-option"; then: "end" | "destroy"; bytes: Buffer }
  | { kind: "transmission"; action: "disc" | "read" | "garbage"; bytes: Buffer; readOffset: number };

export interface HandshakePlan {
  flagsCase: FlagsCase;
  flagsBytes: Buffer;
  steps: OptionStep[];
  /** For an option flood: how many options the server answers before it must hang up. */
  floodLimit: number | null;
  ending: Ending;
  noZeroes: boolean;
  cuts: number[];
  /** `structured` as it stood when transmission began. */
  structuredAtEnd: boolean;
}

export function planHandshakeScript(random: SeededRandom, server: FuzzServer): HandshakePlan {
  const flagsRoll = random.next();
  const flagsCase: FlagsCase = flagsRoll < 0.9 ? "valid" : flagsRoll < 0.96 ? "unknown-bits" : "cut-short";
  let flags = random.pick([3, 3, 3, 1, 0, 2]);
  if (flagsCase === "unknown-bits") flags |= 1 << (2 + random.below(30));
  let flagsBytes = u32(flags);
  if (flagsCase === "cut-short") flagsBytes = flagsBytes.subarray(0, random.below(4));
  const state: HaggleState = { structured: false, noZeroes: (flags & P.NBD_FLAG_C_NO_ZEROES) !== 0 };
  const steps: OptionStep[] = [];
  let floodLimit: number | null = null;
  let ending: Ending = { kind: flagsCase === "cut-short" ? "end" : "none" };
  if (flagsCase === "valid") {
    if (server.limits.optionsPerHandshakeMax <= 1000 && random.next() < 0.05) {
      floodLimit = server.limits.optionsPerHandshakeMax;
      const bytes = optionBytes(P.NBD_OPT_STRUCTURED_REPLY, Buffer.alloc(0));
      for (let i = 0; i < floodLimit + 1 + random.below(4); i++)
        steps.push({
          label: "STRUCTURED_REPLY past the option limit",
          option: P.NBD_OPT_STRUCTURED_REPLY,
          bytes,
          expect: { kind: "replies", final: [P.NBD_REP_ACK], before: [] },
        });
    } else {
      const optionCount = 1 + random.below(8);
      for (let i = 0; i < optionCount; i++) {
        const step = generateOption(random, server, state);
        steps.push(step);
        if (endsHaggling(step)) break;
      }
      ending = planEnding(random, server, state, steps);
    }
  }
  const allBytes = Buffer.concat([flagsBytes, ...steps.map((step) => step.bytes), endingBytes(ending)]);
  const cuts = Array.from({ length: random.below(4) }, () => random.below(allBytes.length)).sort((a, b) => a - b);
  return { flagsCase, flagsBytes, steps, floodLimit, ending, noZeroes: state.noZeroes, cuts, structuredAtEnd: state.structured };
}

function planEnding(random: SeededRandom, server: FuzzServer, state: HaggleState, steps: OptionStep[]): Ending {
  const last = steps[steps.length - 1]!;
  if (!endsHaggling(last)) {
    const roll = random.next();
    if (roll < 0.35) return { kind: "end" };
    if (roll < 0.45) return { kind: "destroy" };
    if (roll < 0.75) {
      const whole = generateOption(random, server, { ...state }).bytes;
      return {
        kind: "cut-option",
        then: random.next() < 0.8 ? "end" : "destroy",
        bytes: whole.subarray(0, 1 + random.below(whole.length - 1)),
      };
    }
    const exportName = random.pick([...server.exports.keys()]);
    const name = Buffer.from(exportName, "utf8");
    steps.push({
      label: `GO '${exportName.slice(0, 40)}'`,
      option: P.NBD_OPT_GO,
      bytes: optionBytes(P.NBD_OPT_GO, infoRequestData(name, [])),
      expect: { kind: "go", exportName, infoTypes: [] },
    });
  }
  const final = steps[steps.length - 1]!.expect;
  if (final.kind !== "go" && final.kind !== "export-name") return { kind: "none" };
  const facts = server.exports.get(final.exportName)!;
  // Garbage may write anywhere, so never on an export whose contents someone checks.
  const garbageSafe = facts.readOnly || (facts.model === null && final.exportName !== "health");
  const action = random.pick(garbageSafe ? (["disc", "read", "garbage"] as const) : (["disc", "read"] as const));
  const readOffset = random.below(facts.sizeBytes - 512);
  const disc = requestHeader({ command: P.NBD_CMD_DISC, flags: 0, cookie: 0n, offset: 0n, byteLength: 0 });
  if (action === "disc") return { kind: "transmission", action, bytes: disc, readOffset };
  if (action === "read") {
    const read = requestHeader({ command: P.NBD_CMD_READ, flags: 0, cookie: 0x5eadn, offset: BigInt(readOffset), byteLength: 512 });
    return { kind: "transmission", action, bytes: Buffer.concat([read, disc]), readOffset };
  }
  const parts: Buffer[] = [];
  for (let i = 0; i < 1 + random.below(5); i++) {
    const header = random.bytes(P.REQUEST_HEADER_BYTES);
    if (random.next() < 0.7) header.writeUInt32BE(P.NBD_REQUEST_MAGIC, 0);
    if (random.next() < 0.7) header.writeUInt16BE(random.below(8), 6);
    if (random.next() < 0.5) header.writeBigUInt64BE(randomU64(random) % BigInt(facts.sizeBytes), 16);
    parts.push(header, random.bytes(random.below(64)));
  }
  return { kind: "transmission", action, bytes: Buffer.concat(parts), readOffset };
}

function endingBytes(ending: Ending): Buffer {
  return ending.kind === "cut-option" || ending.kind === "transmission" ? ending.bytes : Buffer.alloc(0);
}

export async function runHandshakeScript(socket: FuzzSocket, server: FuzzServer, plan: HandshakePlan, stats: ScriptStats): Promise<void> {
  const tally = (kind: string) => {
    stats.cases++;
    stats.requestKinds.set(kind, (stats.requestKinds.get(kind) ?? 0) + 1);
  };
  const all = Buffer.concat([plan.flagsBytes, ...plan.steps.map((step) => step.bytes), endingBytes(plan.ending)]);
  socket.sendInPieces(all, plan.cuts);
  const ending = plan.ending;
  const hangsUp =
    ending.kind === "end" ||
    (ending.kind === "cut-option" && ending.then === "end") ||
    (ending.kind === "transmission" && ending.action === "garbage");
  if (hangsUp) socket.end();
  if (ending.kind === "destroy" || (ending.kind === "cut-option" && ending.then === "destroy")) {
    socket.destroy();
    tally(`handshake ${ending.kind}`);
    stats.cases += plan.steps.length;
    return;
  }
  await readGreeting(socket);
  tally(`client flags ${plan.flagsCase}`);
  if (plan.flagsCase !== "valid") return expectClose(socket, `client flags ${plan.flagsBytes.toString("hex")}`);
  if (plan.floodLimit !== null) {
    for (let i = 0; i < plan.floodLimit; i++) {
      const reply = await readOptionReply(socket, P.NBD_OPT_STRUCTURED_REPLY);
      if (reply.replyType !== P.NBD_REP_ACK) throw new FuzzFailure(`option ${i} of a flood answered 0x${reply.replyType.toString(16)}`);
    }
    tally("options past the limit");
    stats.cases += plan.steps.length - 1;
    return expectClose(socket, `option ${plan.floodLimit + 1}`);
  }
  for (const step of plan.steps) {
    tally(step.kind ?? "option: GO to enter transmission");
    await checkStep(socket, server, step, plan);
  }
  if (ending.kind === "transmission") {
    tally(`after handshake: ${ending.action}`);
    await transmission(socket, server, plan, ending);
  } else {
    if (ending.kind === "cut-option") tally("option cut short");
    if (ending.kind === "end" || ending.kind === "cut-option") await expectClose(socket, "the client hung up");
  }
}

async function checkStep(socket: FuzzSocket, server: FuzzServer, step: OptionStep, plan: HandshakePlan): Promise<void> {
  const expect = step.expect;
  const where = `${step.label}`;
  switch (expect.kind) {
    case "close":
      return expectClose(socket, where);
    case "abort": {
      const reply = await readOptionReply(socket, P.NBD_OPT_ABORT);
      if (reply.replyType !== P.NBD_REP_ACK) throw new FuzzFailure(`${where}: answered 0x${reply.replyType.toString(16)}`);
      return expectClose(socket, where);
    }
    case "replies": {
      const replies = await readOptionReplies(socket, step.option, 256);
      const last = replies[replies.length - 1]!;
      if (!expect.final.includes(last.replyType))
        throw new FuzzFailure(
          `${where}: answered 0x${last.replyType.toString(16)}, expected ${expect.final.map((t) => `0x${t.toString(16)}`).join(" or ")}`,
        );
      if (replies.slice(0, -1).some((reply) => !expect.before.includes(reply.replyType)))
        throw new FuzzFailure(`${where}: unexpected replies ${replies.map((r) => r.replyType.toString(16)).join(",")}`);
      if (last.replyType >= 0x8000_0000 && replies.length !== 1) throw new FuzzFailure(`${where}: error after other replies`);
      if (last.replyType === P.NBD_REP_ACK && last.data.length !== 0) throw new FuzzFailure(`${where}: ACK with data`);
      if (last.replyType === P.NBD_REP_ACK && expect.check) {
        const problem = expect.check(replies);
        if (problem !== null) throw new FuzzFailure(`${where}: ${problem}`);
      }
      return;
    }
    case "export-name": {
      const reply = await socket.read(plan.noZeroes ? 10 : 10 + P.EXPORT_NAME_PADDING_BYTES);
      checkExport(server, expect.exportName, Number(reply.readBigUInt64BE(0)), reply.readUInt16BE(8), plan.structuredAtEnd);
      if (reply.subarray(10).some((byte) => byte !== 0)) throw new FuzzFailure(`${where}: padding is not zeros`);
      return;
    }
    case "go": {
      const replies = await readOptionReplies(socket, P.NBD_OPT_GO);
      const { exportBytes, flags } = checkInfoReplies(replies, expect.exportName, expect.infoTypes);
      checkExport(server, expect.exportName, exportBytes, flags, plan.structuredAtEnd);
      return;
    }
  }
}

function checkExport(server: FuzzServer, exportName: string, exportBytes: number, flags: number, structured: boolean): void {
  const facts = server.exports.get(exportName)!;
  if (exportBytes !== facts.sizeBytes)
    throw new FuzzFailure(`'${exportName.slice(0, 40)}' announced ${exportBytes} bytes, it has ${facts.sizeBytes}`);
  const expected = expectedTransmissionFlags(facts.readOnly, structured);
  if (flags !== expected)
    throw new FuzzFailure(`'${exportName.slice(0, 40)}' transmission flags 0x${flags.toString(16)}, expected 0x${expected.toString(16)}`);
}

async function transmission(
  socket: FuzzSocket,
  server: FuzzServer,
  plan: HandshakePlan,
  ending: Extract<Ending, { kind: "transmission" }>,
): Promise<void> {
  const last = plan.steps[plan.steps.length - 1]!.expect as { exportName: string };
  const facts = server.exports.get(last.exportName)!;
  if (ending.action === "read") {
    const session = {
      facts,
      structured: plan.structuredAtEnd,
      contextId: null,
      transmissionFlags: expectedTransmissionFlags(facts.readOnly, plan.structuredAtEnd),
    };
    const reader = new ReplyReader(socket, session);
    reader.add({
      spec: { command: P.NBD_CMD_READ, flags: 0, cookie: 0x5eadn, offset: BigInt(ending.readOffset), byteLength: 512 },
      expectedErrno: 0,
      unsettled: [],
    });
    await reader.next();
  }
  if (ending.action === "garbage") {
    if (!(await socket.drainUntilClosed()))
      throw new FuzzFailure("garbage after the handshake: the server did not close the half-closed connection");
    return;
  }
  return expectClose(socket, `DISC after the handshake`);
}

async function expectClose(socket: FuzzSocket, where: string): Promise<void> {
  if (!(await socket.drainUntilClosed())) throw new FuzzFailure(`${where}: the server did not close the connection`);
  if (socket.discardedBytes > 0) throw new FuzzFailure(`${where}: ${socket.discardedBytes} bytes before closing, expected none`);
}
