// Random requests for one session: mostly valid-looking ones with random flags, mixed with
// the malformed kinds the brief lists (zero and 2^32-1 lengths, offsets past the export and
// past 2^53, refused writes that still carry their payload, unknown commands and flags,
// duplicate cookies, oversized reads, FLUSH with a range).

import { REQUEST_BYTES_MAX } from "../../src/nbd/limits.js";
import * as P from "../../src/nbd/protocol.js";
import type { SeededRandom } from "../support/random.js";
import { KNOWN_COMMANDS, changesContents, expectedErrno, validCommandFlags, type Session } from "./request-rules.js";
import type { RequestSpec } from "./wire-encoding.js";

const U32_MAX = 0xffff_ffff;
const TWO_POW_53 = 2n ** 53n;
const TWO_POW_64 = 2n ** 64n;
/** Largest WRITE payload the fuzzer sends; bigger ones cost time without reaching new code. */
const PAYLOAD_BYTES_MAX = 1024 * 1024;

export type RequestKind =
  | "valid"
  | "zero-length"
  | "length-u32-max"
  | "offset-past-2^53"
  | "past-the-end"
  | "crossing-2^53"
  | "refused-write-with-payload"
  | "unknown-command"
  | "unknown-flags"
  | "duplicate-cookie"
  | "oversized-read"
  | "maximum-read"
  | "flush-with-range";

const KIND_WEIGHTS: readonly [RequestKind, number][] = [
  ["valid", 52],
  ["zero-length", 5],
  ["length-u32-max", 4],
  ["offset-past-2^53", 4],
  ["past-the-end", 6],
  ["crossing-2^53", 2],
  ["refused-write-with-payload", 7],
  ["unknown-command", 4],
  ["unknown-flags", 5],
  ["duplicate-cookie", 6],
  ["oversized-read", 2],
  ["maximum-read", 0.5],
  ["flush-with-range", 3],
];
const KIND_WEIGHT_TOTAL = KIND_WEIGHTS.reduce((sum, [, weight]) => sum + weight, 0);

export function randomU64(random: SeededRandom): bigint {
  return (BigInt(Math.floor(random.next() * 2 ** 32)) << 32n) | BigInt(Math.floor(random.next() * 2 ** 32));
}

export function pickWeighted<T>(random: SeededRandom, weights: readonly [T, number][], total: number): T {
  let roll = random.next() * total;
  for (const [value, weight] of weights) {
    roll -= weight;
    if (roll < 0) return value;
  }
  return weights[weights.length - 1]![0];
}

/** Mostly small lengths, sometimes block-sized and larger, as real clients send. */
function randomLength(random: SeededRandom, maxBytes: number): number {
  const roll = random.next();
  let length: number;
  if (roll < 0.45) length = 1 + random.below(4096);
  else if (roll < 0.75) length = 1 + random.below(65536);
  else if (roll < 0.9) length = 65536 * (1 + random.below(4));
  else length = 1 + random.below(512 * 1024);
  return Math.min(length, maxBytes);
}

/** A range inside an export of `sizeBytes`; on a huge export, usually near a random spot of it. */
function rangeInside(random: SeededRandom, sizeBytes: number, command: number): { offset: bigint; byteLength: number } {
  const payloadFree = command === P.NBD_CMD_TRIM || command === P.NBD_CMD_WRITE_ZEROES || command === P.NBD_CMD_BLOCK_STATUS;
  const lengthMax = payloadFree && random.next() < 0.1 ? U32_MAX : command === P.NBD_CMD_WRITE ? PAYLOAD_BYTES_MAX : 4 * 1024 * 1024;
  let byteLength = random.next() < 0.1 ? random.below(lengthMax + 1) : randomLength(random, lengthMax);
  byteLength = Math.min(byteLength, sizeBytes);
  // Sometimes flush with the end, where off-by-one mistakes live.
  const offset = random.next() < 0.1 ? sizeBytes - byteLength : random.below(sizeBytes - byteLength + 1);
  return { offset: BigInt(offset), byteLength };
}

function randomValidFlags(random: SeededRandom, command: number, session: Session): number {
  const valid = validCommandFlags(command, session.transmissionFlags);
  let flags = 0;
  for (let bit = 0; bit < 16; bit++) if (valid & (1 << bit) && random.next() < 0.3) flags |= 1 << bit;
  return flags;
}

/** Fixed pseudo-random bytes that large payloads are cut from: generating megabytes per write would dominate the run. */
const PAYLOAD_SOURCE = (() => {
  const out = Buffer.alloc(2 * PAYLOAD_BYTES_MAX);
  let state = 0x2545f491;
  for (let i = 0; i < out.length; i += 4) {
    state ^= state << 13;
    state ^= state >>> 17;
    state ^= state << 5;
    out.writeInt32LE(state | 0, i);
  }
  return out;
})();

function payloadFor(random: SeededRandom, byteLength: number): Buffer {
  if (byteLength <= 4096) return random.bytes(byteLength);
  const start = random.below(PAYLOAD_SOURCE.length - byteLength + 1);
  return Buffer.from(PAYLOAD_SOURCE.subarray(start, start + byteLength));
}

export interface GeneratedRequest {
  spec: RequestSpec;
  kind: RequestKind;
  expectedErrno: number;
}

/**
 * One request for `session`. `earlier` are the requests sent before it in the same burst:
 * a duplicate cookie is taken from them, but never where a simple-reply client could no
 * longer tell how many data bytes follow a reply.
 */
export function generateRequest(random: SeededRandom, session: Session, earlier: readonly GeneratedRequest[]): GeneratedRequest {
  const kind = pickWeighted(random, KIND_WEIGHTS, KIND_WEIGHT_TOTAL);
  const size = session.facts.sizeBytes;
  let command: number = random.pick(KNOWN_COMMANDS);
  let spec: RequestSpec = { command, flags: 0, cookie: randomU64(random), offset: 0n, byteLength: 0 };
  switch (kind) {
    case "valid":
    case "duplicate-cookie":
      spec = { ...spec, ...rangeInside(random, size, command), flags: randomValidFlags(random, command, session) };
      if (command === P.NBD_CMD_FLUSH) spec = { ...spec, offset: 0n, byteLength: 0 };
      break;
    case "zero-length":
      spec = { ...spec, offset: BigInt(random.below(size + 1)), flags: randomValidFlags(random, command, session) };
      break;
    case "length-u32-max":
      // A WRITE announcing 4 GiB cannot be swallowed; that one ends a connection and is a terminal case.
      if (command === P.NBD_CMD_WRITE) command = P.NBD_CMD_READ;
      spec = { ...spec, command, offset: BigInt(random.below(Math.min(size, 1 << 20) + 1)), byteLength: U32_MAX };
      break;
    case "offset-past-2^53": {
      const offset = random.next() < 0.2 ? TWO_POW_64 - 1n : TWO_POW_53 + (randomU64(random) % (TWO_POW_64 - TWO_POW_53));
      spec = { ...spec, offset, byteLength: random.below(4097) };
      break;
    }
    case "past-the-end": {
      const byteLength = 1 + random.below(65536);
      const offset = Math.max(0, size - random.below(byteLength));
      spec = {
        ...spec,
        offset: BigInt(offset),
        byteLength: Math.min(U32_MAX, offset + byteLength > size ? byteLength : byteLength + size),
      };
      break;
    }
    case "crossing-2^53": {
      const byteLength = 2 + random.below(65536);
      spec = { ...spec, offset: TWO_POW_53 - BigInt(1 + random.below(byteLength - 1)), byteLength };
      break;
    }
    case "refused-write-with-payload": {
      command = P.NBD_CMD_WRITE;
      const byteLength = 1 + random.below(random.next() < 0.9 ? 8192 : PAYLOAD_BYTES_MAX);
      const why = random.below(3);
      const offset =
        why === 0
          ? BigInt(size) + BigInt(random.below(1 << 20))
          : why === 1
            ? TWO_POW_53 + BigInt(random.below(1 << 20))
            : BigInt(random.below(Math.max(1, size - byteLength)));
      // why 2: a flag WRITE does not take, so even an in-range write is refused.
      const flags =
        why === 2 ? (1 << (1 + random.below(15))) | randomValidFlags(random, command, session) : randomValidFlags(random, command, session);
      spec = { ...spec, command, offset, byteLength, flags };
      break;
    }
    case "unknown-command":
      command = random.next() < 0.5 ? 8 + random.below(8) : 8 + random.below(0xffff - 8);
      spec = { ...spec, command, offset: BigInt(random.below(size + 1)), byteLength: random.below(4097), flags: random.below(0x10000) };
      break;
    case "unknown-flags":
      spec = { ...spec, ...rangeInside(random, size, command), flags: (1 << (5 + random.below(11))) | random.below(0x20) };
      if (command === P.NBD_CMD_FLUSH) spec = { ...spec, offset: 0n, byteLength: 0 };
      break;
    case "oversized-read":
      command = random.next() < 0.7 ? P.NBD_CMD_READ : P.NBD_CMD_CACHE;
      spec = { ...spec, command, offset: 0n, byteLength: REQUEST_BYTES_MAX + 1 + random.below(U32_MAX - REQUEST_BYTES_MAX) };
      break;
    case "maximum-read":
      // Exactly REQUEST_BYTES_MAX: the largest read allowed (served on the huge export, past the end elsewhere).
      command = random.next() < 0.7 ? P.NBD_CMD_READ : P.NBD_CMD_CACHE;
      spec = {
        ...spec,
        command,
        offset: BigInt(random.below(1 << 20)),
        byteLength: REQUEST_BYTES_MAX,
        flags: randomValidFlags(random, command, session),
      };
      break;
    case "flush-with-range":
      command = P.NBD_CMD_FLUSH;
      spec =
        random.next() < 0.5
          ? { ...spec, command, offset: BigInt(1 + random.below(size)) }
          : { ...spec, command, byteLength: 1 + random.below(U32_MAX) };
      break;
  }
  if (spec.command === P.NBD_CMD_WRITE && spec.byteLength <= PAYLOAD_BYTES_MAX) spec.payload = payloadFor(random, spec.byteLength);
  if (spec.command === P.NBD_CMD_WRITE && spec.payload === undefined) {
    // Only the kinds above can make a WRITE this long; shorten it so its payload can be sent.
    spec.byteLength = random.below(PAYLOAD_BYTES_MAX + 1);
    spec.payload = payloadFor(random, spec.byteLength);
  }
  const generated: GeneratedRequest = { spec, kind, expectedErrno: expectedErrno(session, spec) };
  if (kind === "duplicate-cookie") useEarlierCookie(random, generated, earlier, session);
  return generated;
}

/**
 * A reply carrying data (READ, BLOCK_STATUS) could fit more than one request of a cookie
 * (a block status may describe less than was asked), so the client could not tell whose it
 * is; nor could it when an engine error may answer any of them. The server does not care
 * either way, so duplicates are kept to replies the client can attribute.
 */
function mayShareCookie(request: GeneratedRequest): boolean {
  return request.spec.command !== P.NBD_CMD_READ && request.spec.command !== P.NBD_CMD_BLOCK_STATUS;
}

function useEarlierCookie(random: SeededRandom, request: GeneratedRequest, earlier: readonly GeneratedRequest[], session: Session): void {
  if (earlier.length === 0 || !mayShareCookie(request) || session.facts.flaky || session.facts.mayRunOutOfSpace) return;
  const cookie = earlier[random.below(earlier.length)]!.spec.cookie;
  if (earlier.some((other) => other.spec.cookie === cookie && !mayShareCookie(other))) return;
  request.spec.cookie = cookie;
}

/** True when a burst's outcome for the model is order-dependent at this range. */
export function changesRange(request: GeneratedRequest): boolean {
  return changesContents(request.spec.command) && request.expectedErrno === 0 && request.spec.byteLength > 0;
}
