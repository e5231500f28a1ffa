// The client side of option haggling as a well-behaved client does it, checking every reply:
// used to open the sessions that request fuzzing then abuses, and by the health check.

import { BLOCK_SIZE_MAX_BYTES, BLOCK_SIZE_MIN_BYTES, BLOCK_SIZE_PREFERRED_BYTES, OPTION_BYTES_MAX } from "../../src/nbd/limits.js";
import * as P from "../../src/nbd/protocol.js";
import type { FuzzSocket } from "./fuzz-socket.js";
import type { FuzzServer } from "./fuzz-target.js";
import { FuzzFailure } from "./reply-reader.js";
import { expectedTransmissionFlags, type Session } from "./request-rules.js";
import { infoRequestData, metaContextData, optionBytes, u32 } from "./wire-encoding.js";

export interface OptionReply {
  option: number;
  replyType: number;
  data: Buffer;
}

/** Option replies carry at most a name or message plus a few fields; more means lost framing. */
const OPTION_REPLY_BYTES_MAX = OPTION_BYTES_MAX;

export async function readGreeting(socket: FuzzSocket): Promise<void> {
  const greeting = await socket.read(18);
  if (greeting.readBigUInt64BE(0) !== P.NBD_INIT_MAGIC || greeting.readBigUInt64BE(8) !== P.NBD_OPTS_MAGIC) {
    throw new FuzzFailure(`greeting ${greeting.toString("hex")}`);
  }
  const flags = greeting.readUInt16BE(16);
  if (flags !== (P.NBD_FLAG_FIXED_NEWSTYLE | P.NBD_FLAG_NO_ZEROES)) throw new FuzzFailure(`handshake flags 0x${flags.toString(16)}`);
}

export async function readOptionReply(socket: FuzzSocket, option: number): Promise<OptionReply> {
  const header = await socket.read(20);
  if (header.readBigUInt64BE(0) !== P.NBD_REP_MAGIC) throw new FuzzFailure(`option reply magic ${header.subarray(0, 8).toString("hex")}`);
  const replyOption = header.readUInt32BE(8);
  if (replyOption !== option) throw new FuzzFailure(`reply for option ${replyOption} while option ${option} was being answered`);
  const byteLength = header.readUInt32BE(16);
  if (byteLength > OPTION_REPLY_BYTES_MAX) throw new FuzzFailure(`option reply of ${byteLength} bytes`);
  return { option, replyType: header.readUInt32BE(12), data: await socket.read(byteLength) };
}

/** Replies to one option up to and including its final one (ACK or an error). */
export async function readOptionReplies(socket: FuzzSocket, option: number, repliesMax = 64): Promise<OptionReply[]> {
  const replies: OptionReply[] = [];
  for (let i = 0; i < repliesMax; i++) {
    const reply = await readOptionReply(socket, option);
    replies.push(reply);
    if (reply.replyType === P.NBD_REP_ACK || reply.replyType >= 0x8000_0000) return replies;
  }
  throw new FuzzFailure(`option ${option} got more than ${repliesMax} replies`);
}

export interface SessionChoice {
  exportName: string;
  structured: boolean;
  /** Select base:allocation (needs `structured`). */
  selectContext: boolean;
  /** Select it for this export instead, which leaves the chosen export without it. */
  contextExportName?: string;
  via: "go" | "export-name";
  noZeroes: boolean;
  infoTypes: number[];
}

/** The bytes a well-behaved client sends from the greeting to transmission. */
export function sessionOpeningBytes(choice: SessionChoice): Buffer {
  const name = Buffer.from(choice.exportName, "utf8");
  const parts = [u32(P.NBD_FLAG_C_FIXED_NEWSTYLE | (choice.noZeroes ? P.NBD_FLAG_C_NO_ZEROES : 0))];
  if (choice.structured) parts.push(optionBytes(P.NBD_OPT_STRUCTURED_REPLY, Buffer.alloc(0)));
  if (choice.selectContext) {
    const contextName = Buffer.from(choice.contextExportName ?? choice.exportName, "utf8");
    parts.push(optionBytes(P.NBD_OPT_SET_META_CONTEXT, metaContextData(contextName, [Buffer.from(P.BASE_ALLOCATION_CONTEXT)])));
  }
  if (choice.via === "go") parts.push(optionBytes(P.NBD_OPT_GO, infoRequestData(name, choice.infoTypes)));
  else parts.push(optionBytes(P.NBD_OPT_EXPORT_NAME, name));
  return Buffer.concat(parts);
}

/** Sends the opening (in pieces cut at `cuts`) and checks every reply; the session is then in transmission. */
export async function openSession(
  socket: FuzzSocket,
  server: FuzzServer,
  choice: SessionChoice,
  cuts: readonly number[] = [],
): Promise<Session> {
  const facts = server.exports.get(choice.exportName);
  if (facts === undefined) throw new Error(`fuzzer bug: no export '${choice.exportName}' on the ${server.kind} server`);
  socket.sendInPieces(sessionOpeningBytes(choice), cuts);
  await readGreeting(socket);
  if (choice.structured) {
    const [ack] = await readOptionReplies(socket, P.NBD_OPT_STRUCTURED_REPLY);
    if (ack!.replyType !== P.NBD_REP_ACK) throw new FuzzFailure(`STRUCTURED_REPLY answered 0x${ack!.replyType.toString(16)}`);
  }
  let contextId: number | null = null;
  if (choice.selectContext) {
    const replies = await readOptionReplies(socket, P.NBD_OPT_SET_META_CONTEXT);
    const context = replies.find((reply) => reply.replyType === P.NBD_REP_META_CONTEXT);
    if (replies.length !== 2 || context === undefined || context.data.subarray(4).toString("utf8") !== P.BASE_ALLOCATION_CONTEXT) {
      throw new FuzzFailure(`SET_META_CONTEXT base:allocation answered ${replies.map((reply) => reply.replyType.toString(16)).join(",")}`);
    }
    // A context selected for another export does not apply to this one.
    if ((choice.contextExportName ?? choice.exportName) === choice.exportName) contextId = context.data.readUInt32BE(0);
  }
  const expectedFlags = expectedTransmissionFlags(facts.readOnly, choice.structured);
  let exportBytes: number;
  let flags: number;
  if (choice.via === "go") {
    const replies = await readOptionReplies(socket, P.NBD_OPT_GO);
    ({ exportBytes, flags } = checkInfoReplies(replies, choice.exportName, choice.infoTypes));
  } else {
    const reply = await socket.read(choice.noZeroes ? 10 : 10 + P.EXPORT_NAME_PADDING_BYTES);
    exportBytes = Number(reply.readBigUInt64BE(0));
    flags = reply.readUInt16BE(8);
    if (reply.subarray(10).some((byte) => byte !== 0)) throw new FuzzFailure("EXPORT_NAME padding is not zeros");
  }
  if (exportBytes !== facts.sizeBytes)
    throw new FuzzFailure(`export '${choice.exportName}' announced ${exportBytes} bytes, it has ${facts.sizeBytes}`);
  if (flags !== expectedFlags)
    throw new FuzzFailure(`transmission flags 0x${flags.toString(16)}, the document says 0x${expectedFlags.toString(16)}`);
  return { facts, structured: choice.structured, contextId, transmissionFlags: flags };
}

/** Checks a successful INFO or GO answer; returns the export's size and flags. */
export function checkInfoReplies(
  replies: OptionReply[],
  exportName: string,
  infoTypes: readonly number[],
): { exportBytes: number; flags: number } {
  const last = replies[replies.length - 1]!;
  if (last.replyType !== P.NBD_REP_ACK)
    throw new FuzzFailure(`INFO/GO for '${exportName.slice(0, 40)}' ended with 0x${last.replyType.toString(16)}`);
  const infos = replies.slice(0, -1);
  if (infos.some((reply) => reply.replyType !== P.NBD_REP_INFO || reply.data.length < 2))
    throw new FuzzFailure("INFO/GO reply other than NBD_REP_INFO before the ACK");
  const first = infos[0];
  if (first === undefined || first.data.readUInt16BE(0) !== P.NBD_INFO_EXPORT || first.data.length !== 12)
    throw new FuzzFailure("NBD_INFO_EXPORT is not the first INFO reply");
  const blockSize = infos.find((reply) => reply.data.readUInt16BE(0) === P.NBD_INFO_BLOCK_SIZE);
  if (
    blockSize === undefined ||
    blockSize.data.length !== 14 ||
    blockSize.data.readUInt32BE(2) !== BLOCK_SIZE_MIN_BYTES ||
    blockSize.data.readUInt32BE(6) !== BLOCK_SIZE_PREFERRED_BYTES ||
    blockSize.data.readUInt32BE(10) !== BLOCK_SIZE_MAX_BYTES
  ) {
    throw new FuzzFailure("NBD_INFO_BLOCK_SIZE missing or not as documented");
  }
  if (infoTypes.includes(P.NBD_INFO_NAME)) {
    const name = infos.find((reply) => reply.data.readUInt16BE(0) === P.NBD_INFO_NAME);
    if (name === undefined || name.data.subarray(2).toString("utf8") !== exportName)
      throw new FuzzFailure("NBD_INFO_NAME missing or wrong");
  }
  return { exportBytes: Number(first.data.readBigUInt64BE(2)), flags: first.data.readUInt16BE(10) };
}
