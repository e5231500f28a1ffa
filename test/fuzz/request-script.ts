// A fuzz script in transmission: open a session as a good client would, send bursts of
// generated requests (each burst pipelined, in random pieces), check every reply against
// the rules and the content model, then end the connection in one of the ways the brief
// asks for: DISC, a bad magic, an unswallowable WRITE, garbage, or a disconnect in the
// middle of a header or a payload.

import { REQUEST_BYTES_MAX } from "../../src/nbd/limits.js";
import * as P from "../../src/nbd/protocol.js";
import type { SeededRandom } from "../support/random.js";
import { overlaps, type ByteRange } from "./content-model.js";
import type { FuzzSocket } from "./fuzz-socket.js";
import type { FuzzServer } from "./fuzz-target.js";
import { openSession, sessionOpeningBytes, type SessionChoice } from "./option-replies.js";
import { FuzzFailure, ReplyReader, describe, type PendingRequest, type Reply } from "./reply-reader.js";
import { changesRange, generateRequest, randomU64, type GeneratedRequest } from "./request-generator.js";
import { expectedTransmissionFlags, type Session } from "./request-rules.js";
import { requestBytes, requestHeader, type RequestSpec } from "./wire-encoding.js";

export type Terminal =
  | "disc"
  | "probe-then-disc"
  | "bad-magic"
  | "write-too-long"
  | "end-mid-header"
  | "destroy-mid-header"
  | "end-mid-payload"
  | "destroy-mid-payload"
  | "end"
  | "garbage";

const TERMINALS: readonly Terminal[] = [
  "disc",
  "probe-then-disc",
  "probe-then-disc",
  "bad-magic",
  "write-too-long",
  "end-mid-header",
  "destroy-mid-header",
  "end-mid-payload",
  "destroy-mid-payload",
  "end",
  "garbage",
];

interface Burst {
  requests: GeneratedRequest[];
  cuts: number[];
  /** The client stops reading for this long after sending, so replies back up in the server. */
  pauseReadingMs: number;
}

export interface RequestPlan {
  choice: SessionChoice;
  openingCuts: number[];
  bursts: Burst[];
  terminal: Terminal;
  /** Sent right behind the last burst, before its replies are read. */
  terminalPipelined: boolean;
  terminalBytes: Buffer;
  probe: { offset: number; data: Buffer } | null;
}

export interface ScriptStats {
  cases: number;
  requestKinds: Map<string, number>;
}

function count(stats: ScriptStats, kind: string, cases = 1): void {
  stats.cases += cases;
  stats.requestKinds.set(kind, (stats.requestKinds.get(kind) ?? 0) + 1);
}

function randomCuts(random: SeededRandom, byteLength: number, countMax: number): number[] {
  const cuts = Array.from({ length: random.below(countMax + 1) }, () => random.below(byteLength));
  return cuts.sort((a, b) => a - b);
}

/** A session as the plan will see it, for computing expectations before connecting. */
function plannedSession(server: FuzzServer, choice: SessionChoice): Session {
  const facts = server.exports.get(choice.exportName)!;
  return {
    facts,
    structured: choice.structured,
    contextId: choice.selectContext && (choice.contextExportName ?? choice.exportName) === choice.exportName ? 1 : null,
    transmissionFlags: expectedTransmissionFlags(facts.readOnly, choice.structured),
  };
}

export function planRequestScript(random: SeededRandom, server: FuzzServer, lane: string): RequestPlan {
  // Mostly the worker's own lane (modeled); otherwise an export shared with other workers, unmodeled or read-only.
  const roll = random.next();
  const shared = random.pick(server.kind === "memory" ? ["ro", "huge", "flaky"] : ["ro", "base"]);
  const exportName = lane !== "" && roll < 0.75 ? lane : shared;
  const structured = random.next() < 0.7;
  const choice: SessionChoice = {
    exportName,
    structured,
    selectContext: structured && random.next() < 0.8,
    contextExportName: random.next() < 0.1 ? random.pick([...server.exports.keys()]) : undefined,
    via: random.next() < 0.9 ? "go" : "export-name",
    noZeroes: random.next() < 0.7,
    infoTypes:
      random.next() < 0.5 ? [] : [P.NBD_INFO_NAME, P.NBD_INFO_DESCRIPTION, P.NBD_INFO_BLOCK_SIZE].filter(() => random.next() < 0.5),
  };
  const session = plannedSession(server, choice);
  const bursts: Burst[] = [];
  const burstCount = 1 + random.below(3);
  for (let b = 0; b < burstCount; b++) {
    const requests: GeneratedRequest[] = [];
    const requestCount = 1 + random.below(40);
    for (let i = 0; i < requestCount; i++) requests.push(generateRequest(random, session, requests));
    const byteLength = requests.reduce((sum, request) => sum + requestBytes(request.spec).length, 0);
    bursts.push({ requests, cuts: randomCuts(random, byteLength, 4), pauseReadingMs: random.next() < 0.03 ? 1 + random.below(20) : 0 });
  }
  const terminal = random.pick(TERMINALS);
  const modeledLane = exportName === lane;
  return {
    choice,
    openingCuts: randomCuts(random, sessionOpeningBytes(choice).length, 3),
    bursts,
    terminal,
    terminalPipelined: terminal !== "garbage" && terminal !== "probe-then-disc" && random.next() < 0.5,
    terminalBytes: terminalBytes(random, terminal, session, modeledLane),
    probe: terminal === "probe-then-disc" ? probeRange(random, session) : null,
  };
}

function terminalBytes(random: SeededRandom, terminal: Terminal, session: Session, modeledLane: boolean): Buffer {
  const size = session.facts.sizeBytes;
  const anyHeader = (): RequestSpec => ({
    command: random.below(8),
    flags: random.below(0x20),
    cookie: randomU64(random),
    offset: BigInt(random.below(size)),
    byteLength: random.below(65536),
  });
  switch (terminal) {
    case "disc":
    case "probe-then-disc":
      return requestHeader({
        ...anyHeader(),
        command: P.NBD_CMD_DISC,
        flags: random.next() < 0.9 ? 0 : random.below(0x10000),
        byteLength: 0,
        offset: 0n,
      });
    case "bad-magic": {
      let magic = Math.floor(random.next() * 2 ** 32);
      if (magic === P.NBD_REQUEST_MAGIC) magic ^= 1;
      return requestHeader({ ...anyHeader(), magic });
    }
    case "write-too-long":
      return requestHeader({
        ...anyHeader(),
        command: P.NBD_CMD_WRITE,
        byteLength: REQUEST_BYTES_MAX + 1 + random.below(0xffff_ffff - REQUEST_BYTES_MAX),
      });
    case "end-mid-header":
    case "destroy-mid-header":
      return requestHeader(anyHeader()).subarray(0, 1 + random.below(P.REQUEST_HEADER_BYTES - 1));
    case "end-mid-payload":
    case "destroy-mid-payload": {
      const byteLength = 2 + random.below(65535);
      const header = requestHeader({ ...anyHeader(), command: P.NBD_CMD_WRITE, offset: 0n, byteLength });
      return Buffer.concat([header, random.bytes(random.below(byteLength))]);
    }
    case "end":
      return Buffer.alloc(0);
    case "garbage":
      return garbage(random, modeledLane);
  }
}

/**
 * Random bytes. On a modeled lane they start with a bad magic, so the server hangs up before
 * acting on any of it (a random WRITE would make the model wrong); elsewhere they include
 * headers with the right magic, so the server acts on nonsense.
 */
function garbage(random: SeededRandom, modeledLane: boolean): Buffer {
  const parts: Buffer[] = [];
  const pieces = 1 + random.below(6);
  for (let i = 0; i < pieces; i++) {
    if (!modeledLane && random.next() < 0.6) {
      const header = random.bytes(P.REQUEST_HEADER_BYTES);
      header.writeUInt32BE(P.NBD_REQUEST_MAGIC, 0);
      // Keep commands mostly known, so the nonsense reaches the engine now and then.
      if (random.next() < 0.7) header.writeUInt16BE(random.below(8), 6);
      parts.push(header);
    } else {
      parts.push(random.bytes(random.below(200)));
    }
  }
  const bytes = Buffer.concat(parts);
  if (modeledLane && bytes.length >= 4 && bytes.readUInt32BE(0) === P.NBD_REQUEST_MAGIC) bytes[0]! ^= 0xff;
  return bytes;
}

function probeRange(random: SeededRandom, session: Session): { offset: number; data: Buffer } {
  const byteLength = 1 + random.below(Math.min(65536, session.facts.sizeBytes));
  const offset = random.below(Math.min(session.facts.sizeBytes, 64 * 1024 * 1024) - byteLength + 1);
  return { offset, data: random.bytes(byteLength) };
}

/** Runs a plan; throws FuzzFailure on any answer the rules do not allow. */
export async function runRequestScript(socket: FuzzSocket, server: FuzzServer, plan: RequestPlan, stats: ScriptStats): Promise<void> {
  const session = await openSession(socket, server, plan.choice, plan.openingCuts);
  const reader = new ReplyReader(socket, session);
  for (let b = 0; b < plan.bursts.length; b++) {
    const burst = plan.bursts[b]!;
    const pending = sendBurst(socket, reader, burst);
    for (const request of burst.requests) count(stats, request.kind);
    const pipelineTerminal = b === plan.bursts.length - 1 && plan.terminalPipelined;
    if (pipelineTerminal) sendTerminal(socket, plan);
    if (burst.pauseReadingMs > 0) await socket.pauseReading(burst.pauseReadingMs);
    if (pipelineTerminal && plan.terminal.startsWith("destroy")) {
      forgetChanges(session, pending);
      count(stats, `terminal ${plan.terminal}`);
      return;
    }
    const replies = await readReplies(reader, session);
    settleBurst(session, replies);
  }
  if (!plan.terminalPipelined) {
    if (plan.probe !== null) {
      await probe(socket, reader, session, plan.probe);
      count(stats, "probe", 2);
    }
    sendTerminal(socket, plan);
  }
  count(stats, `terminal ${plan.terminal}`);
  await expectEnding(socket, plan.terminal);
}

function sendBurst(socket: FuzzSocket, reader: ReplyReader, burst: Burst): PendingRequest[] {
  const pending: PendingRequest[] = [];
  // What this burst may change; a read in the same burst may see those bytes before or after.
  const changed = burst.requests.filter(changesRange).map((request) => rangeOf(request.spec));
  for (const request of burst.requests) {
    const entry: PendingRequest = { spec: request.spec, expectedErrno: request.expectedErrno, unsettled: changed };
    pending.push(entry);
    reader.add(entry);
  }
  socket.sendInPieces(Buffer.concat(burst.requests.map((request) => requestBytes(request.spec))), burst.cuts);
  return pending;
}

function sendTerminal(socket: FuzzSocket, plan: RequestPlan): void {
  socket.send(plan.terminalBytes);
  if (plan.terminal.startsWith("destroy")) socket.destroy();
  else if (plan.terminal.startsWith("end") || plan.terminal === "garbage") socket.end();
}

function rangeOf(spec: RequestSpec): ByteRange {
  return { offset: Number(spec.offset), byteLength: spec.byteLength };
}

async function readReplies(reader: ReplyReader, session: Session): Promise<Reply[]> {
  const replies: Reply[] = [];
  // One reply per pass; bounded by the requests in flight.
  while (reader.pendingCount > 0) {
    const reply = await reader.next();
    checkAgainstModel(session, reply);
    replies.push(reply);
  }
  return replies;
}

function checkAgainstModel(session: Session, reply: Reply): void {
  const model = session.facts.model;
  if (model === null) return;
  const offset = Number(reply.request.spec.offset);
  if (reply.data !== undefined) {
    const mismatch = model.firstMismatch(offset, reply.data, reply.request.unsettled);
    if (mismatch !== null) throw new FuzzFailure(`${describe(reply.request)}: read ${mismatch}`);
  }
  for (const extent of reply.extents ?? []) {
    if (extent.flags !== (P.NBD_STATE_HOLE | P.NBD_STATE_ZERO)) continue;
    const nonzero = model.firstKnownNonzero(extent.offset, extent.byteLength, reply.request.unsettled);
    if (nonzero !== null)
      throw new FuzzFailure(
        `${describe(reply.request)}: ${extent.offset}+${extent.byteLength} reported as zero, but offset ${nonzero} holds data`,
      );
  }
}

/** Applies a finished burst's changes to the model; where two overlapped, either order was allowed, so forget. */
function settleBurst(session: Session, replies: Reply[]): void {
  const model = session.facts.model;
  if (model === null) return;
  const done = replies.filter((reply) => reply.errno === 0 && changesRange({ spec: reply.request.spec, kind: "valid", expectedErrno: 0 }));
  const failedChanges = replies.filter((reply) => reply.errno !== 0 && reply.request.expectedErrno === 0);
  for (const reply of failedChanges) model.forget(Number(reply.request.spec.offset), reply.request.spec.byteLength);
  for (const reply of done) {
    const range = rangeOf(reply.request.spec);
    if (done.some((other) => other !== reply && overlaps(range, rangeOf(other.request.spec)))) {
      model.forget(range.offset, range.byteLength);
    } else if (reply.request.spec.command === P.NBD_CMD_WRITE) {
      model.write(range.offset, reply.request.spec.payload!);
    } else {
      model.zero(range.offset, range.byteLength);
    }
  }
}

function forgetChanges(session: Session, pending: PendingRequest[]): void {
  const model = session.facts.model;
  if (model === null) return;
  for (const request of pending) {
    if (changesRange({ spec: request.spec, kind: "valid", expectedErrno: request.expectedErrno })) {
      model.forget(Number(request.spec.offset), request.spec.byteLength);
    }
  }
}

/**
 * In-band check that the connection is still in step: write a pattern (when writable), read
 * it back. The bytes are compared only on the worker's own export: on a shared one another
 * worker may write in between.
 */
async function probe(socket: FuzzSocket, reader: ReplyReader, session: Session, target: { offset: number; data: Buffer }): Promise<void> {
  const cookie = 0x7072_6f62_6500_0000n;
  const offset = BigInt(target.offset);
  let written: Buffer | null = null;
  if (!session.facts.readOnly) {
    const write: PendingRequest = {
      spec: { command: P.NBD_CMD_WRITE, flags: 0, cookie, offset, byteLength: target.data.length, payload: target.data },
      expectedErrno: 0,
      unsettled: [],
    };
    reader.add(write);
    socket.send(requestBytes(write.spec));
    const [reply] = await readReplies(reader, session);
    if (reply!.errno === 0) {
      if (session.facts.model !== null) written = target.data;
      session.facts.model?.write(target.offset, target.data);
    } else {
      session.facts.model?.forget(target.offset, target.data.length);
    }
  }
  const read: PendingRequest = {
    spec: { command: P.NBD_CMD_READ, flags: 0, cookie: cookie + 1n, offset, byteLength: target.data.length },
    expectedErrno: 0,
    unsettled: [],
  };
  reader.add(read);
  socket.send(requestBytes(read.spec));
  const [reply] = await readReplies(reader, session);
  if (written !== null && reply!.errno === 0 && !reply!.data!.equals(written))
    throw new FuzzFailure(`probe: read back differs from the write at ${target.offset}+${written.length}`);
}

/** After the terminal step: the server must close, and must send nothing more. */
async function expectEnding(socket: FuzzSocket, terminal: Terminal): Promise<void> {
  if (terminal.startsWith("destroy")) return;
  const closed = await socket.drainUntilClosed();
  if (!closed) throw new FuzzFailure(`after '${terminal}' the server did not close the connection`);
  if (terminal !== "garbage" && socket.discardedBytes > 0)
    throw new FuzzFailure(`after '${terminal}' the server sent ${socket.discardedBytes} unexpected bytes`);
}
