// The NBD fuzzer: seeded scripts of handshakes, requests and mutated streams run by
// concurrent workers against live servers in this process, in rounds; after each round the
// oracle checks that nothing crashed, that a well-behaved client is still served on both
// servers, and that memory stays bounded. Floods of connections and slow readers run
// between rounds, alone. Script i depends only on (seed, i), so `--script i` replays it.

import { SeededRandom } from "../support/random.js";
import { runFlood, type FloodKind } from "./flood.js";
import { FuzzSocket } from "./fuzz-socket.js";
import { FuzzTarget, type FuzzServer, type ServerKind } from "./fuzz-target.js";
import { wellBehavedClient } from "./health-check.js";
import { CrashGuard, MemoryMeter } from "./oracle.js";
import type { ScriptStats } from "./request-script.js";
import { chooseScriptKind, runScript } from "./script.js";
import { hex } from "./wire-encoding.js";

export interface FuzzOptions {
  seed: number;
  /** Stop once at least this many cases have run. */
  cases: number;
  /** Concurrent workers; the last POOL_WORKERS work on the pool server, the rest on the memory server. */
  workers?: number;
  scriptsPerWorkerPerRound?: number;
  /** Run a flood between rounds every this many rounds. */
  floodEveryRounds?: number;
  handshakeTimeoutMs?: number;
  connectionsMax?: number;
  /** Include the flood that waits out the handshake timeout (costs that long). */
  timeoutFlood?: boolean;
  /** Give up (and say so) after this long. */
  timeLimitMs?: number;
  /** Rounds run before the memory baseline is taken. */
  warmUpRounds?: number;
  /** Run only this script (a replay). */
  onlyScript?: number;
  log?: (line: string) => void;
}

export interface FailureReport {
  what: string;
  message: string;
  /** What the client sent on the failing connection, as hex. */
  sentHex: string | null;
  sentTruncated: boolean;
  replay: string;
}

export interface FuzzReport {
  seed: number;
  cases: number;
  scripts: number;
  connections: number;
  milliseconds: number;
  casesPerSecond: number;
  kinds: Map<string, number>;
  rssGrowthBytes: number;
  rssGrowthMaxBytes: number;
  gcAvailable: boolean;
  failures: FailureReport[];
  stoppedByTimeLimit: boolean;
}

/** Rounds before the memory baseline is taken (about 4,000 cases at the default sizes). */
const WARM_UP_ROUNDS = 5;

/** Workers on the pool server: two, so the engine also sees concurrent clients on one volume. */
const POOL_WORKERS = 2;

/** A 32-bit mix (Wang's integer hash, twice) so neighbouring script numbers get unrelated seeds. */
export function scriptSeed(seed: number, script: number): number {
  let h = (seed ^ Math.imul(script + 1, 0x9e3779b1)) >>> 0;
  for (let round = 0; round < 2; round++) {
    h = Math.imul(h ^ (h >>> 16), 0x85ebca6b) >>> 0;
    h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35) >>> 0;
    h = (h ^ (h >>> 16)) >>> 0;
  }
  return h;
}

const FLOODS: readonly { kind: FloodKind; server: ServerKind }[] = [
  { kind: "past-the-limit", server: "memory" },
  { kind: "shutdown-under-load", server: "memory" },
  { kind: "slow-reader-options", server: "memory" },
  { kind: "past-the-limit", server: "pool" },
  { kind: "slow-reader-requests", server: "memory" },
  { kind: "slow-reader-requests", server: "pool" },
];

export async function runFuzz(options: FuzzOptions): Promise<FuzzReport> {
  const workers = options.workers ?? 8;
  const scriptsPerRound = options.scriptsPerWorkerPerRound ?? 4;
  const floodEvery = options.floodEveryRounds ?? 8;
  const warmUpRounds = options.warmUpRounds ?? WARM_UP_ROUNDS;
  const log = options.log ?? (() => {});
  const timeLimitMs = options.timeLimitMs ?? 10 * 60_000;
  const stats: ScriptStats = { cases: 0, requestKinds: new Map() };
  const failures: FailureReport[] = [];
  const guard = guardProcess(failures, `--seed ${options.seed}`);
  const started = Date.now();
  const target = await FuzzTarget.start({
    memoryLanes: workers - POOL_WORKERS,
    poolLanes: POOL_WORKERS,
    connectionsMax: options.connectionsMax ?? 32,
    handshakeTimeoutMs: options.handshakeTimeoutMs ?? 3000,
  });
  const meter = new MemoryMeter();
  let scripts = 0;
  let connections = 0;
  let stoppedByTimeLimit = false;

  const runIndexedScript = async (index: number): Promise<void> => {
    const worker = index % workers;
    const memoryWorkers = workers - POOL_WORKERS;
    const server = worker >= memoryWorkers ? target.pool : target.memory;
    const lane = server.kind === "pool" ? server.lanes[worker - memoryWorkers]! : server.lanes[worker]!;
    const random = new SeededRandom(scriptSeed(options.seed, index));
    const kind = chooseScriptKind(random);
    let socket: FuzzSocket | null = null;
    scripts++;
    connections++;
    try {
      socket = await FuzzSocket.connect(server.socketPath);
      await runScript(kind, socket, server, lane, random, stats);
    } catch (error) {
      // The script stopped halfway, so its lane's model no longer knows what the export holds.
      const model = server.exports.get(lane)!.model!;
      model.forget(0, model.sizeBytes);
      const sent = socket?.sentBytes() ?? { bytes: Buffer.alloc(0), truncated: false };
      failures.push({
        what: `script ${index} (${kind}, ${server.kind} server${kind === "requests" ? `, lane ${lane}` : ""})`,
        message: error instanceof Error ? error.message : String(error),
        sentHex: hex(sent.bytes),
        sentTruncated: sent.truncated,
        replay: `--seed ${options.seed} --script ${index}`,
      });
    } finally {
      socket?.destroy();
    }
  };

  const oracle = async (round: number): Promise<void> => {
    const random = new SeededRandom(scriptSeed(options.seed ^ 0x0dac1e, round));
    for (const server of [target.memory, target.pool]) {
      try {
        connections++;
        await wellBehavedClient(server, random);
      } catch (error) {
        failures.push({
          what: `the oracle after round ${round}`,
          message: (error as Error).message,
          sentHex: null,
          sentTruncated: false,
          replay: `--seed ${options.seed}`,
        });
      }
    }
  };

  const flood = async (kind: FloodKind, server: FuzzServer, number: number): Promise<void> => {
    const random = new SeededRandom(scriptSeed(options.seed ^ 0xf100d, number));
    try {
      connections += await runFlood(kind, random, target, server, stats);
    } catch (error) {
      failures.push({
        what: `flood ${number} (${kind}, ${server.kind} server)`,
        message: (error as Error).message,
        sentHex: null,
        sentTruncated: false,
        replay: `--seed ${options.seed}`,
      });
    }
  };

  try {
    if (options.onlyScript !== undefined) {
      await runIndexedScript(options.onlyScript);
      await oracle(0);
    } else {
      if (options.timeoutFlood ?? true) await flood("handshake-timeout", target.memory, 0);
      let floodNumber = 1;
      // Each round runs workers × scriptsPerRound scripts; bounded by the case target and the time limit.
      for (let round = 0; stats.cases < options.cases && failures.length === 0; round++) {
        if (Date.now() - started > timeLimitMs) {
          stoppedByTimeLimit = true;
          break;
        }
        const first = round * workers * scriptsPerRound;
        await Promise.all(
          Array.from({ length: workers }, async (_, worker) => {
            for (let k = 0; k < scriptsPerRound; k++) await runIndexedScript(first + k * workers + worker);
          }),
        );
        await oracle(round);
        // The baseline is taken after a few rounds of every kind of script: memory they warm
        // up (compiled code, allocator arenas, the fixture's volumes and pool files filling
        // to their bounds) is not growth over the run.
        if (round === warmUpRounds - 1) meter.start();
        target.forgetCallLogs();
        // A forced GC costs milliseconds; every few rounds is often enough to see growth.
        // Sampled before a flood, whose buffers are transient by design.
        if (round % 5 === 4 && round >= warmUpRounds) meter.sample();
        if (round % floodEvery === floodEvery - 1) {
          const next = FLOODS[(floodNumber - 1) % FLOODS.length]!;
          await flood(next.kind, target.server(next.server), floodNumber++);
        }
        if (round % 10 === 0)
          log(
            `round ${round}: ${stats.cases} cases, ${connections} connections, ${Math.round(stats.cases / ((Date.now() - started) / 1000))} cases/s`,
          );
      }
    }
  } finally {
    const problem = await target.close();
    if (problem !== null)
      failures.push({
        what: "the pool after the run",
        message: problem,
        sentHex: null,
        sentTruncated: false,
        replay: `--seed ${options.seed}`,
      });
    guard.remove();
  }
  meter.sample();
  const milliseconds = Date.now() - started;
  const memory = meter.result();
  if (memory.growthBytes > memory.boundBytes) {
    failures.push({
      what: "memory",
      message: `RSS grew by ${(memory.growthBytes / 2 ** 20).toFixed(0)} MiB over the run, more than ${(memory.boundBytes / 2 ** 20).toFixed(0)} MiB`,
      sentHex: null,
      sentTruncated: false,
      replay: `--seed ${options.seed}`,
    });
  }
  return {
    seed: options.seed,
    cases: stats.cases,
    scripts,
    connections,
    milliseconds,
    casesPerSecond: Math.round(stats.cases / (milliseconds / 1000)),
    kinds: stats.requestKinds,
    rssGrowthBytes: memory.growthBytes,
    rssGrowthMaxBytes: memory.boundBytes,
    gcAvailable: memory.gcAvailable,
    failures,
    stoppedByTimeLimit,
  };
}

const HEX_CHARS_SHOWN_MAX = 16 * 1024;

/** A failure as people read it: what failed, how to replay it, and the bytes the client sent. */
export function describeFailure(failure: FailureReport): string {
  const lines = [`FAILED: ${failure.what}: ${failure.message}`, `  replay: npm run fuzz -- ${failure.replay}`];
  if (failure.sentHex !== null) {
    const shown = failure.sentHex.slice(0, HEX_CHARS_SHOWN_MAX);
    const cut = failure.sentHex.length > shown.length || failure.sentTruncated;
    lines.push(`  bytes sent (${failure.sentHex.length / 2}${failure.sentTruncated ? "+" : ""}); replay them raw with --replay HEX:`);
    lines.push(`  ${shown}${cut ? " ...(cut; replay by seed and script)" : ""}`);
  }
  return lines.join("\n");
}

/** Replays raw bytes (a failing case's hex) on a fresh server, then runs the oracle. */
export async function replayBytes(
  bytes: Buffer,
  serverKind: ServerKind,
  hangUp: "end" | "destroy",
  log: (line: string) => void,
): Promise<FailureReport[]> {
  const failures: FailureReport[] = [];
  const guard = guardProcess(failures, "");
  const target = await FuzzTarget.start({ memoryLanes: 6, poolLanes: POOL_WORKERS, connectionsMax: 32, handshakeTimeoutMs: 3000 });
  try {
    const socket = await FuzzSocket.connect(target.server(serverKind).socketPath);
    socket.send(bytes);
    if (hangUp === "destroy") socket.destroy();
    else socket.end();
    const closed = await socket.drainUntilClosed();
    log(`server ${closed ? "closed the connection" : "did not close the connection"} after sending ${socket.discardedBytes} bytes`);
    if (!closed)
      failures.push({
        what: "replay",
        message: "the server did not close the connection",
        sentHex: null,
        sentTruncated: false,
        replay: "",
      });
    const random = new SeededRandom(1);
    for (const server of [target.memory, target.pool]) {
      try {
        await wellBehavedClient(server, random);
      } catch (error) {
        failures.push({ what: "the oracle", message: (error as Error).message, sentHex: null, sentTruncated: false, replay: "" });
      }
    }
  } finally {
    const problem = await target.close();
    if (problem !== null) failures.push({ what: "the pool", message: problem, sentHex: null, sentTruncated: false, replay: "" });
    guard.remove();
  }
  return failures;
}

/** Records any uncaught error of this process as a failure of the run, with how to replay it. */
function guardProcess(failures: FailureReport[], replay: string): CrashGuard {
  return new CrashGuard((error) =>
    failures.push({
      what: "the process",
      message: `uncaught: ${error.stack ?? String(error)}`,
      sentHex: null,
      sentTruncated: false,
      replay,
    }),
  );
}
