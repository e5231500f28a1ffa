// Reads the server's replies off a fuzz connection and matches each to a request in flight
// by cookie. Every reply must be well formed, belong to a request, and say what the rules
// say it should; a READ's bytes and a BLOCK_STATUS's extents go back to the caller.

import { BLOCK_STATUS_EXTENTS_MAX, BLOCK_STATUS_SCAN_BYTES_MAX, MESSAGE_BYTES_MAX, REQUEST_BYTES_MAX } from "../../src/nbd/limits.js";
import * as P from "../../src/nbd/protocol.js";
import type { ByteRange } from "./content-model.js";
import type { FuzzSocket } from "./fuzz-socket.js";
import { engineMayFail, type Session } from "./request-rules.js";
import type { RequestSpec } from "./wire-encoding.js";

export class FuzzFailure extends Error {
  override name = "FuzzFailure";
}

export interface PendingRequest {
  spec: RequestSpec;
  /** The errno the rules require; 0 for success. */
  expectedErrno: number;
  /** Ranges changed by other requests in flight at the same time: a READ may see either version there. */
  unsettled: ByteRange[];
}

export interface StatusExtent {
  offset: number;
  byteLength: number;
  flags: number;
}

export interface Reply {
  request: PendingRequest;
  errno: number;
  /** A successful READ's bytes, holes filled with zeros. */
  data?: Buffer;
  /** A successful BLOCK_STATUS's extents. */
  extents?: StatusExtent[];
}

interface Chunk {
  flags: number;
  chunkType: number;
  cookie: bigint;
  payload: Buffer;
}

/** Chunks one reply may have; a mapped/unmapped alternation over 32 MiB of 64 KiB blocks is 512. */
const CHUNKS_PER_REPLY_MAX = 4096;
/** A chunk payload larger than any read's data plus its offset means the framing is lost. */
const CHUNK_PAYLOAD_BYTES_MAX = REQUEST_BYTES_MAX + 8;

export class ReplyReader {
  private readonly inFlight = new Map<bigint, PendingRequest[]>();
  private inFlightCount = 0;

  constructor(
    private readonly socket: FuzzSocket,
    private readonly session: Session,
  ) {}

  get pendingCount(): number {
    return this.inFlightCount;
  }

  add(request: PendingRequest): void {
    const list = this.inFlight.get(request.spec.cookie);
    if (list) list.push(request);
    else this.inFlight.set(request.spec.cookie, [request]);
    this.inFlightCount++;
  }

  /** Requests in flight with this cookie (for choosing duplicate cookies the client can still tell apart). */
  withCookie(cookie: bigint): readonly PendingRequest[] {
    return this.inFlight.get(cookie) ?? [];
  }

  allPending(): PendingRequest[] {
    return [...this.inFlight.values()].flat();
  }

  /** Reads the next whole reply and retires the request it answers. */
  async next(): Promise<Reply> {
    const magic = await this.socket.peekU32();
    if (magic === P.NBD_SIMPLE_REPLY_MAGIC) return this.simpleReply();
    if (magic === P.NBD_STRUCTURED_REPLY_MAGIC) return this.structuredReply();
    throw new FuzzFailure(`reply starts with magic 0x${magic.toString(16)}, neither simple nor structured`);
  }

  private candidates(cookie: bigint): PendingRequest[] {
    const list = this.inFlight.get(cookie);
    if (!list || list.length === 0) throw new FuzzFailure(`reply for cookie 0x${cookie.toString(16)}, which no request in flight has`);
    return list;
  }

  private retire(request: PendingRequest): void {
    const list = this.inFlight.get(request.spec.cookie)!;
    list.splice(list.indexOf(request), 1);
    if (list.length === 0) this.inFlight.delete(request.spec.cookie);
    this.inFlightCount--;
  }

  private errnoAcceptable(request: PendingRequest, errno: number): boolean {
    return errno === request.expectedErrno || (request.expectedErrno === 0 && engineMayFail(this.session, request.spec, errno));
  }

  private async simpleReply(): Promise<Reply> {
    const header = await this.socket.read(P.SIMPLE_REPLY_HEADER_BYTES);
    const errno = header.readUInt32BE(4);
    const cookie = header.readBigUInt64BE(8);
    const candidates = this.candidates(cookie);
    // With structured replies, a successful READ or BLOCK_STATUS cannot be the one a simple reply answers.
    const mustBeStructured = (candidate: PendingRequest) =>
      this.session.structured &&
      errno === 0 &&
      (candidate.spec.command === P.NBD_CMD_READ || candidate.spec.command === P.NBD_CMD_BLOCK_STATUS);
    const acceptable = candidates.filter((candidate) => this.errnoAcceptable(candidate, errno));
    const request = acceptable.find((candidate) => !mustBeStructured(candidate)) ?? acceptable[0];
    if (request === undefined)
      throw new FuzzFailure(`${describe(candidates[0]!)}: simple reply errno ${errno}, expected ${candidates[0]!.expectedErrno}`);
    this.retire(request);
    const { command, byteLength } = request.spec;
    if (errno !== 0 || (command !== P.NBD_CMD_READ && command !== P.NBD_CMD_BLOCK_STATUS)) return { request, errno };
    if (this.session.structured)
      throw new FuzzFailure(
        `${describe(request)}: simple reply to a ${command === P.NBD_CMD_READ ? "READ" : "BLOCK_STATUS"} after structured replies were negotiated`,
      );
    if (command === P.NBD_CMD_BLOCK_STATUS) throw new FuzzFailure(`${describe(request)}: BLOCK_STATUS answered without structured replies`);
    return { request, errno, data: await this.socket.read(byteLength) };
  }

  private async structuredReply(): Promise<Reply> {
    if (!this.session.structured) throw new FuzzFailure("structured reply chunk on a connection that did not negotiate structured replies");
    const chunks: Chunk[] = [];
    // Bounded by CHUNKS_PER_REPLY_MAX.
    for (;;) {
      const header = await this.socket.read(P.STRUCTURED_REPLY_HEADER_BYTES);
      const magic = header.readUInt32BE(0);
      if (magic !== P.NBD_STRUCTURED_REPLY_MAGIC)
        throw new FuzzFailure(`chunk ${chunks.length} of a reply has magic 0x${magic.toString(16)}: replies interleaved or framing lost`);
      const payloadBytes = header.readUInt32BE(16);
      if (payloadBytes > CHUNK_PAYLOAD_BYTES_MAX) throw new FuzzFailure(`chunk payload of ${payloadBytes} bytes`);
      const chunk = {
        flags: header.readUInt16BE(4),
        chunkType: header.readUInt16BE(6),
        cookie: header.readBigUInt64BE(8),
        payload: await this.socket.read(payloadBytes),
      };
      if (chunks.length > 0 && chunk.cookie !== chunks[0]!.cookie) throw new FuzzFailure("chunks of two replies interleaved");
      if ((chunk.flags & ~P.NBD_REPLY_FLAG_DONE) !== 0) throw new FuzzFailure(`chunk flags 0x${chunk.flags.toString(16)}`);
      chunks.push(chunk);
      if (chunk.flags & P.NBD_REPLY_FLAG_DONE) break;
      if (chunks.length >= CHUNKS_PER_REPLY_MAX) throw new FuzzFailure(`a reply of more than ${CHUNKS_PER_REPLY_MAX} chunks`);
    }
    const candidates = this.candidates(chunks[0]!.cookie);
    let firstProblem = "";
    for (const request of candidates) {
      const outcome = this.interpret(request, chunks);
      if (typeof outcome === "string") {
        firstProblem ||= `${describe(request)}: ${outcome}`;
        continue;
      }
      this.retire(request);
      return outcome;
    }
    throw new FuzzFailure(firstProblem);
  }

  /** The reply these chunks make for `request`, or what is wrong with them. */
  private interpret(request: PendingRequest, chunks: Chunk[]): Reply | string {
    const last = chunks[chunks.length - 1]!;
    if (last.chunkType === P.NBD_REPLY_TYPE_ERROR) {
      if (chunks.length !== 1) return "error chunk after content chunks";
      if (last.payload.length < 6) return `error chunk of ${last.payload.length} bytes`;
      const errno = last.payload.readUInt32BE(0);
      const messageBytes = last.payload.readUInt16BE(4);
      if (6 + messageBytes !== last.payload.length || messageBytes > MESSAGE_BYTES_MAX)
        return `error message of ${messageBytes} bytes in a ${last.payload.length}-byte chunk`;
      if (errno === 0) return "error chunk with errno 0";
      if (!this.errnoAcceptable(request, errno))
        return `error ${errno} (${last.payload.subarray(6).toString("utf8")}), expected ${request.expectedErrno}`;
      return { request, errno };
    }
    if (request.expectedErrno !== 0) return `succeeded, expected error ${request.expectedErrno}`;
    switch (request.spec.command) {
      case P.NBD_CMD_READ:
        return readReply(request, chunks);
      case P.NBD_CMD_BLOCK_STATUS:
        return this.blockStatusReply(request, chunks);
      default:
        if (chunks.length !== 1 || last.chunkType !== P.NBD_REPLY_TYPE_NONE || last.payload.length !== 0)
          return "success of a command without data must be one empty NONE chunk";
        return { request, errno: 0 };
    }
  }

  private blockStatusReply(request: PendingRequest, chunks: Chunk[]): Reply | string {
    const chunk = chunks[0]!;
    if (chunks.length !== 1 || chunk.chunkType !== P.NBD_REPLY_TYPE_BLOCK_STATUS)
      return "BLOCK_STATUS must answer with one BLOCK_STATUS chunk";
    const payload = chunk.payload;
    if (payload.length < 12 || (payload.length - 4) % 8 !== 0) return `BLOCK_STATUS payload of ${payload.length} bytes`;
    if (payload.readUInt32BE(0) !== this.session.contextId)
      return `context id ${payload.readUInt32BE(0)}, selected ${this.session.contextId}`;
    const count = (payload.length - 4) / 8;
    if (count > BLOCK_STATUS_EXTENTS_MAX) return `${count} descriptors`;
    if (request.spec.flags & P.NBD_CMD_FLAG_REQ_ONE && count !== 1) return `${count} descriptors with REQ_ONE`;
    const extents: StatusExtent[] = [];
    let cursor = Number(request.spec.offset);
    for (let i = 0; i < count; i++) {
      const byteLength = payload.readUInt32BE(4 + 8 * i);
      const flags = payload.readUInt32BE(8 + 8 * i);
      if (byteLength === 0) return `descriptor ${i} of zero length`;
      if (flags !== 0 && flags !== P.NBD_STATE_HOLE && flags !== (P.NBD_STATE_HOLE | P.NBD_STATE_ZERO)) return `descriptor flags ${flags}`;
      extents.push({ offset: cursor, byteLength, flags });
      cursor += byteLength;
    }
    const described = cursor - Number(request.spec.offset);
    if (described > request.spec.byteLength || described > BLOCK_STATUS_SCAN_BYTES_MAX)
      return `descriptors cover ${described} bytes of a ${request.spec.byteLength}-byte request`;
    return { request, errno: 0, extents };
  }
}

function readReply(request: PendingRequest, chunks: Chunk[]): Reply | string {
  const start = Number(request.spec.offset);
  const { byteLength, flags } = request.spec;
  const data = Buffer.alloc(byteLength);
  if (byteLength === 0) {
    const only = chunks[0]!;
    if (chunks.length !== 1 || only.chunkType !== P.NBD_REPLY_TYPE_NONE || only.payload.length !== 0)
      return "a zero-length READ must answer with one NONE chunk";
    return { request, errno: 0, data };
  }
  const covered: ByteRange[] = [];
  let dataChunks = 0;
  for (const chunk of chunks) {
    let range: ByteRange;
    if (chunk.chunkType === P.NBD_REPLY_TYPE_OFFSET_DATA) {
      if (chunk.payload.length < 9) return `data chunk of ${chunk.payload.length} bytes`;
      range = { offset: Number(chunk.payload.readBigUInt64BE(0)), byteLength: chunk.payload.length - 8 };
      if (range.offset >= start && range.offset + range.byteLength <= start + byteLength) chunk.payload.copy(data, range.offset - start, 8);
      dataChunks++;
    } else if (chunk.chunkType === P.NBD_REPLY_TYPE_OFFSET_HOLE) {
      if (chunk.payload.length !== 12) return `hole chunk of ${chunk.payload.length} bytes`;
      range = { offset: Number(chunk.payload.readBigUInt64BE(0)), byteLength: chunk.payload.readUInt32BE(8) };
      if (range.byteLength === 0) return "hole chunk of zero length";
    } else {
      return `chunk type ${chunk.chunkType} in a READ reply`;
    }
    if (range.offset < start || range.offset + range.byteLength > start + byteLength)
      return `chunk ${range.offset}+${range.byteLength} outside the request`;
    if (covered.some((other) => range.offset < other.offset + other.byteLength && other.offset < range.offset + range.byteLength))
      return "chunks overlap";
    covered.push(range);
  }
  const total = covered.reduce((sum, range) => sum + range.byteLength, 0);
  if (total !== byteLength) return `chunks cover ${total} of ${byteLength} bytes`;
  if (flags & P.NBD_CMD_FLAG_DF && (dataChunks !== 1 || chunks.length !== 1)) return `${chunks.length} chunks for a READ with DF`;
  return { request, errno: 0, data };
}

export function describe(request: PendingRequest): string {
  const { command, flags, cookie, offset, byteLength } = request.spec;
  return `command ${command} flags 0x${flags.toString(16)} cookie 0x${cookie.toString(16)} offset ${offset} length ${byteLength}`;
}
