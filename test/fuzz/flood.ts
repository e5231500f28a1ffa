// Connection floods and slow readers, run while nothing else talks to the server:
// - idle connections up to the limit and past it: the extra ones are refused at once, and
//   once the flood goes a well-behaved client is served again;
// - idle connections left in the handshake: the handshake timeout clears them by itself;
// - a client that sends but never reads: the server's buffered replies stay bounded;
// - a server shut down while clients are in every phase: close() finishes in bounded time,
//   every attach gets its detach, and the other server carries on.
// After each, every client the catalog saw attach must have detached.

import * as P from "../../src/nbd/protocol.js";
import { SeededRandom } from "../support/random.js";
import { FuzzSocket } from "./fuzz-socket.js";
import type { FuzzServer, FuzzTarget } from "./fuzz-target.js";
import { wellBehavedClient } from "./health-check.js";
import { sessionOpeningBytes, openSession } from "./option-replies.js";
import { FuzzFailure } from "./reply-reader.js";
import type { ScriptStats } from "./request-script.js";
import { chooseScriptKind, runScript } from "./script.js";
import { optionBytes, requestHeader } from "./wire-encoding.js";

const MiB = 1024 * 1024;
/** Memory beyond the server's own limits that a client who reads nothing may cost (allocator and measuring slack). */
const SLOW_READER_SLACK_BYTES = 12 * MiB;
const POLL_MS = 10;
/** How long a flood waits for the server to notice closed connections. */
const SETTLE_POLLS_MAX = 500;

export type FloodKind = "past-the-limit" | "handshake-timeout" | "slow-reader-options" | "slow-reader-requests" | "shutdown-under-load";

/** Clients running scripts against the server being shut down. */
const SHUTDOWN_CLIENTS = 6;
/** Scripts each of them runs at most, if the shutdown somehow does not stop them. */
const SHUTDOWN_SCRIPTS_MAX = 40;
/** How long close() may take beyond its drain timeout before the flood calls it stuck. */
const CLOSE_GRACE_MS = 5000;

function sleep(milliseconds: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, milliseconds));
}

async function until(condition: () => boolean, what: string): Promise<void> {
  for (let i = 0; i < SETTLE_POLLS_MAX; i++) {
    if (condition()) return;
    await sleep(POLL_MS);
  }
  throw new FuzzFailure(`timed out waiting for ${what}`);
}

function tally(stats: ScriptStats, kind: string, cases: number): void {
  stats.cases += cases;
  stats.requestKinds.set(kind, (stats.requestKinds.get(kind) ?? 0) + cases);
}

/** Whether the server greets this connection (true) or closes it without a byte (false). */
async function greeted(socket: FuzzSocket): Promise<boolean> {
  try {
    await socket.read(18);
    return true;
  } catch {
    if (socket.discardedBytes > 0 || socket.pendingBytes > 0) throw new FuzzFailure("a refused connection received bytes");
    return false;
  }
}

/** Runs one flood; resolves with the number of connections it opened. */
export async function runFlood(
  kind: FloodKind,
  random: SeededRandom,
  target: FuzzTarget,
  server: FuzzServer,
  stats: ScriptStats,
): Promise<number> {
  await until(() => server.server.connectionCount === 0, "the server to drop earlier connections");
  const connections = await floodOfKind(kind, random, target, server, stats);
  await until(() => (server.attachedClients() ?? 0) === 0, "every attached client to be detached");
  return connections;
}

function floodOfKind(kind: FloodKind, random: SeededRandom, target: FuzzTarget, server: FuzzServer, stats: ScriptStats): Promise<number> {
  switch (kind) {
    case "past-the-limit":
      return pastTheLimit(random, server, stats);
    case "handshake-timeout":
      return handshakeTimeout(random, server, stats);
    case "slow-reader-options":
      return slowReaderOptions(server, stats);
    case "slow-reader-requests":
      return slowReaderRequests(server, stats);
    case "shutdown-under-load":
      return shutdownUnderLoad(random, target, server, stats);
  }
}

/** A second server over the same catalog, busy with scripts of every kind, is closed at a random moment. */
async function shutdownUnderLoad(random: SeededRandom, target: FuzzTarget, survivor: FuzzServer, stats: ScriptStats): Promise<number> {
  const doomed = await target.startExtraMemoryServer();
  let connections = 0;
  let closing = false;
  const clients = Array.from({ length: SHUTDOWN_CLIENTS }, async (_, client) => {
    const clientRandom = new SeededRandom(random.below(2 ** 31) + client);
    for (let n = 0; n < SHUTDOWN_SCRIPTS_MAX && !closing; n++) {
      let socket: FuzzSocket;
      try {
        socket = await FuzzSocket.connect(doomed.socketPath, doomed.limits.drainTimeoutMs + CLOSE_GRACE_MS);
      } catch {
        return; // the server has stopped listening
      }
      connections++;
      try {
        await runScript(chooseScriptKind(clientRandom), socket, doomed, "", clientRandom, stats);
      } catch {
        // Shutdown cuts scripts short; what matters is the server's side, checked below.
      } finally {
        socket.destroy();
      }
    }
  });
  await sleep(random.below(40));
  closing = true;
  const closed = doomed.server.close().then(() => true);
  const stuck = sleep(doomed.limits.drainTimeoutMs + CLOSE_GRACE_MS).then(() => false);
  if (!(await Promise.race([closed, stuck]))) throw new FuzzFailure("close() under load did not finish within its drain timeout");
  await Promise.all(clients);
  tally(stats, "flood: server shut down under load", 1);
  if (doomed.server.connectionCount !== 0) throw new FuzzFailure(`${doomed.server.connectionCount} connections left after close()`);
  await wellBehavedClient(survivor, random);
  return connections + 1;
}

async function pastTheLimit(random: SeededRandom, server: FuzzServer, stats: ScriptStats): Promise<number> {
  const limit = server.limits.connectionsMax;
  const sockets: FuzzSocket[] = [];
  const idleExport = server.kind === "memory" ? "huge" : "base";
  try {
    for (let i = 0; i < limit; i++) {
      const socket = await FuzzSocket.connect(server.socketPath);
      sockets.push(socket);
      const role = random.below(3);
      if (role === 2) {
        // Into transmission, then idle: not subject to the handshake timeout.
        await openSession(socket, server, {
          exportName: idleExport,
          structured: false,
          selectContext: false,
          via: "go",
          noZeroes: true,
          infoTypes: [],
        });
      } else {
        if (role === 1)
          socket.send(
            sessionOpeningBytes({
              exportName: idleExport,
              structured: true,
              selectContext: false,
              via: "go",
              noZeroes: true,
              infoTypes: [],
            }).subarray(0, 1 + random.below(24)),
          );
        if (!(await greeted(socket))) throw new FuzzFailure(`connection ${i + 1} of a limit of ${limit} was refused`);
      }
    }
    const extra = 1 + random.below(8);
    for (let i = 0; i < extra; i++) {
      const socket = await FuzzSocket.connect(server.socketPath);
      sockets.push(socket);
      if (await greeted(socket)) throw new FuzzFailure(`connection ${limit + i + 1} past the limit of ${limit} was greeted`);
    }
    tally(stats, "flood: connections to and past the limit", limit + extra);
    // Let them go: some hang up, some disconnect politely, some vanish.
    for (const socket of sockets) {
      const how = random.below(3);
      if (how === 0) socket.destroy();
      else if (how === 1) socket.end();
      else socket.send(requestHeader({ command: P.NBD_CMD_DISC, flags: 0, cookie: 0n, offset: 0n, byteLength: 0 }));
    }
    await until(() => server.server.connectionCount === 0, "the flood's connections to close");
    await wellBehavedClient(server, random);
    return sockets.length + 1;
  } finally {
    for (const socket of sockets) socket.destroy();
  }
}

async function handshakeTimeout(random: SeededRandom, server: FuzzServer, stats: ScriptStats): Promise<number> {
  const limit = server.limits.connectionsMax;
  const sockets: FuzzSocket[] = [];
  try {
    for (let i = 0; i < limit; i++) {
      const socket = await FuzzSocket.connect(server.socketPath, server.limits.handshakeTimeoutMs * 3);
      sockets.push(socket);
      if (random.next() < 0.5)
        socket.send(
          Buffer.concat([Buffer.from([0, 0, 0, 3]), optionBytes(P.NBD_OPT_GO, Buffer.alloc(4))]).subarray(0, 4 + random.below(20)),
        );
      if (!(await greeted(socket))) throw new FuzzFailure(`idle connection ${i + 1} of a limit of ${limit} was refused`);
    }
    tally(stats, "flood: idle handshakes left to time out", limit);
    // Nobody lets go: the server must clear them itself.
    await Promise.all(sockets.map((socket) => socket.closed));
    if (sockets.some((socket) => !socket.isClosed)) throw new FuzzFailure("idle handshakes outlived the handshake timeout");
    await until(() => server.server.connectionCount === 0, "timed-out connections to be forgotten");
    await wellBehavedClient(server, random);
    return sockets.length + 1;
  } finally {
    for (const socket of sockets) socket.destroy();
  }
}

/** Grows of process memory (ArrayBuffers, where socket buffers live) while `act` runs; the largest seen. */
async function peakBufferGrowth(act: () => void, pollMs: number, polls: number): Promise<number> {
  const before = process.memoryUsage().arrayBuffers;
  act();
  let peak = 0;
  for (let i = 0; i < polls; i++) {
    await sleep(pollMs);
    peak = Math.max(peak, process.memoryUsage().arrayBuffers - before);
  }
  return peak;
}

async function slowReaderOptions(server: FuzzServer, stats: ScriptStats): Promise<number> {
  // LIST costs the client 16 bytes and the server every export's name: the largest amplification there is.
  const optionCount = Math.min(10_000, server.limits.optionsPerHandshakeMax - 1);
  const bound = server.limits.replyBufferBytesMax + SLOW_READER_SLACK_BYTES;
  const socket = await FuzzSocket.connect(server.socketPath);
  try {
    const list = optionBytes(P.NBD_OPT_LIST, Buffer.alloc(0));
    const growth = await peakBufferGrowth(
      () => {
        void socket.pauseReading(500);
        socket.send(Buffer.concat([Buffer.from([0, 0, 0, 3]), ...Array.from({ length: optionCount }, () => list)]));
      },
      40,
      10,
    );
    // Thousands of copies of one option make one case, not thousands.
    tally(stats, "flood: options from a client that never reads", 1);
    if (growth > bound) {
      throw new FuzzFailure(
        `${optionCount} LIST options from a client that reads nothing grew buffers by ${(growth / MiB).toFixed(0)} MiB (bound ${(bound / MiB).toFixed(0)} MiB)`,
      );
    }
  } finally {
    socket.destroy();
  }
  await until(() => server.server.connectionCount === 0, "the slow reader's connection to close");
  return 1;
}

async function slowReaderRequests(server: FuzzServer, stats: ScriptStats): Promise<number> {
  const requestCount = 200;
  const byteLength = 1 * MiB;
  // In flight, plus the reply buffer, plus the one reply that crossed it.
  const bound = server.limits.inflightBytesMax + server.limits.replyBufferBytesMax + byteLength + SLOW_READER_SLACK_BYTES;
  const exportName = server.kind === "memory" ? "huge" : "base";
  const socket = await FuzzSocket.connect(server.socketPath);
  try {
    await openSession(socket, server, { exportName, structured: false, selectContext: false, via: "go", noZeroes: true, infoTypes: [] });
    const reads = Array.from({ length: requestCount }, (_, i) =>
      requestHeader({ command: P.NBD_CMD_READ, flags: 0, cookie: BigInt(i), offset: 0n, byteLength }),
    );
    const growth = await peakBufferGrowth(
      () => {
        void socket.pauseReading(500);
        socket.send(Buffer.concat(reads));
      },
      40,
      10,
    );
    tally(stats, "flood: reads from a client that never reads", 1);
    if (growth > bound) {
      throw new FuzzFailure(
        `${requestCount} reads of 1 MiB from a client that reads nothing grew buffers by ${(growth / MiB).toFixed(0)} MiB (bound ${(bound / MiB).toFixed(0)} MiB)`,
      );
    }
  } finally {
    socket.destroy();
  }
  await until(() => server.server.connectionCount === 0, "the slow reader's connection to close");
  return 1;
}
