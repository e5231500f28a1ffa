// The servers under fuzz, in this process: one over memory volumes and one over a real Pool
// (on memory files) as `thinp serve` wires it, each on a Unix socket in a temporary directory.
// Limits are small so the fuzzer reaches them.

import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ServedPool } from "../../src/control/served-pool.js";
import { MemoryStorageFile } from "../../src/io/memory-storage-file.js";
import { DEFAULT_LIMITS, startNbdServer, type NbdLimits, type NbdServer } from "../../src/nbd/index.js";
import { NAME_BYTES_MAX, REQUEST_BYTES_MAX } from "../../src/nbd/limits.js";
import { Pool } from "../../src/thin/pool.js";
import { MemoryCatalog } from "../support/memory-catalog.js";
import { MEMORY_BLOCK_BYTES, MemoryPoolSpace, MemoryVolume } from "../support/memory-volume.js";
import { ContentModel, pattern } from "./content-model.js";
import { FlakyVolume, FuzzCatalog } from "./faulty-exports.js";

const MiB = 1024 * 1024;
/** Exports whose contents the fuzzer models; small, so the model is cheap and random offsets collide. */
export const LANE_BYTES = 1 * MiB;
/** An export as large as a JavaScript number can address, so offset + length can cross 2^53 inside it. */
export const HUGE_BYTES = Number.MAX_SAFE_INTEGER;
/** Data blocks behind the huge export: write-zeroes with NO_HOLE across it runs out of space, not memory. */
const HUGE_SPACE_BLOCKS = 64;
/**
 * Room for the pool's five small volumes, each of which copy-on-write can double between
 * commits; the pool's memory files grow towards this size (twice, with the durable copy).
 */
const POOL_BYTES = 16 * MiB;
export const LONG_NAME = "n".repeat(NAME_BYTES_MAX);
export const HEALTH_EXPORT = "health";
const RO_PATTERN_SEED = 99;
/** How long close() of the server the shutdown flood stops may wait for busy connections. */
const EXTRA_SERVER_DRAIN_TIMEOUT_MS = 2000;

export interface ExportFacts {
  name: string;
  sizeBytes: number;
  readOnly: boolean;
  /** Writes may fail for lack of space (ENOSPC) even when valid. */
  mayRunOutOfSpace: boolean;
  /** Any engine call may fail (EIO or ENOSPC): the export is a FlakyVolume. */
  flaky: boolean;
  /** The contents, when the fuzzer tracks them. */
  model: ContentModel | null;
}

export type ServerKind = "memory" | "pool";

export interface FuzzServer {
  kind: ServerKind;
  server: NbdServer;
  socketPath: string;
  limits: NbdLimits;
  /** Every export a client can enter transmission on. */
  exports: Map<string, ExportFacts>;
  /** Listed and answered by INFO, but GO and EXPORT_NAME refuse them (a volume being deleted). */
  busy: Set<string>;
  /** Listed, but opening them fails with an engine error. */
  broken: Set<string>;
  /** Exports one fuzz worker each has to itself, so their models are exact. */
  lanes: string[];
  /** Clients attached to an export and not yet detached, when the catalog counts them. */
  attachedClients(): number | null;
  /** The volumes an export offers a qemu:dirty-bitmap: context for. */
  comparisonBases(exportName: string): string[];
}

export interface FuzzTargetOptions {
  memoryLanes: number;
  poolLanes: number;
  connectionsMax: number;
  handshakeTimeoutMs: number;
}

interface PoolParts {
  pool: Pool;
  served: ServedPool;
  metaFile: MemoryStorageFile;
  dataFile: MemoryStorageFile;
}

interface MemoryParts {
  catalog: FuzzCatalog;
  volumes: MemoryVolume[];
  exports: Map<string, ExportFacts>;
  lanes: string[];
}

export class FuzzTarget {
  private extraServers = 0;

  private constructor(
    readonly directory: string,
    private readonly options: FuzzTargetOptions,
    readonly memory: FuzzServer,
    private readonly memoryParts: MemoryParts,
    readonly pool: FuzzServer,
    private readonly poolParts: PoolParts,
  ) {}

  static async start(options: FuzzTargetOptions): Promise<FuzzTarget> {
    const directory = mkdtempSync(join(tmpdir(), "thinp-fuzz-"));
    const memoryParts = createMemoryCatalog(options.memoryLanes);
    const memory = await startServer("memory", memoryParts.catalog, join(directory, "memory.sock"), memoryLimits(options), memoryParts);
    const poolParts = await createPool(options.poolLanes);
    const pool = await startPoolServer(directory, options, poolParts, options.poolLanes);
    return new FuzzTarget(directory, options, memory, memoryParts, pool, poolParts);
  }

  server(kind: ServerKind): FuzzServer {
    return kind === "memory" ? this.memory : this.pool;
  }

  /** Another server over the memory catalog, on its own socket, for a flood that shuts it down under load. */
  async startExtraMemoryServer(): Promise<FuzzServer> {
    const socketPath = join(this.directory, `extra-${++this.extraServers}.sock`);
    const limits = { ...memoryLimits(this.options), drainTimeoutMs: EXTRA_SERVER_DRAIN_TIMEOUT_MS };
    const server = await startServer("memory", this.memoryParts.catalog, socketPath, limits, this.memoryParts);
    // Same exports, but no lanes: the workers' models must not see another server's writes.
    return { ...server, lanes: [] };
  }

  /** Memory volumes log every call for tests that inspect them; over a long run that log is a leak of the fixture's own. */
  forgetCallLogs(): void {
    for (const volume of this.memoryParts.volumes) volume.calls.length = 0;
  }

  /**
   * Closes both servers, commits and reopens the pool, and compares what the pool lanes hold
   * with their models: what was acknowledged must be what the engine kept. Returns a problem or null.
   */
  async close(): Promise<string | null> {
    await Promise.all([this.memory.server.close(), this.pool.server.close()]);
    const { pool, served, metaFile, dataFile } = this.poolParts;
    await served.settle();
    await pool.commit();
    await pool.close();
    const reopened = await Pool.openFiles(metaFile, dataFile);
    try {
      for (const name of this.pool.lanes) {
        const model = this.pool.exports.get(name)!.model!;
        const contents = await (await reopened.volume(name)).read(0, model.sizeBytes);
        const mismatch = model.firstMismatch(0, contents, []);
        if (mismatch !== null) return `pool volume '${name}' after reopening: ${mismatch}`;
      }
      return null;
    } finally {
      await reopened.close();
      rmSync(this.directory, { recursive: true, force: true });
    }
  }
}

function facts(name: string, sizeBytes: number, readOnly: boolean, extra: Partial<ExportFacts> = {}): ExportFacts {
  return { name, sizeBytes, readOnly, mayRunOutOfSpace: false, flaky: false, model: null, ...extra };
}

function createMemoryCatalog(laneCount: number): MemoryParts {
  const inner = new MemoryCatalog();
  const catalog = new FuzzCatalog(inner);
  const exports = new Map<string, ExportFacts>();
  const volumes: MemoryVolume[] = [];
  const add = (volume: MemoryVolume, extra: Partial<ExportFacts> = {}) => {
    volumes.push(volume);
    inner.add(volume, `fuzz export ${volume.name.slice(0, 16)}`);
    exports.set(volume.name, facts(volume.name, volume.sizeBytes, volume.readOnly, extra));
  };
  const lanes: string[] = [];
  for (let i = 0; i < laneCount; i++) {
    lanes.push(`lane-${i}`);
    add(new MemoryVolume(`lane-${i}`, LANE_BYTES), { model: new ContentModel(LANE_BYTES) });
  }
  const ro = new MemoryVolume("ro", LANE_BYTES, true);
  ro.fill(0, pattern(LANE_BYTES, RO_PATTERN_SEED));
  add(ro, { model: new ContentModel(LANE_BYTES, pattern(LANE_BYTES, RO_PATTERN_SEED)) });
  add(new MemoryVolume("huge", HUGE_BYTES, false, new MemoryPoolSpace(HUGE_SPACE_BLOCKS)), { mayRunOutOfSpace: true });
  add(new MemoryVolume(HEALTH_EXPORT, LANE_BYTES));
  add(new MemoryVolume(LONG_NAME, MEMORY_BLOCK_BYTES));
  add(new MemoryVolume("dïsk-ü", MEMORY_BLOCK_BYTES));
  inner.add(new MemoryVolume("busy", MEMORY_BLOCK_BYTES));
  inner.busy.add("busy");
  const flakyBacking = new MemoryVolume("flaky", 4 * MiB);
  volumes.push(flakyBacking);
  catalog.addFlaky(new FlakyVolume(flakyBacking));
  exports.set("flaky", facts("flaky", flakyBacking.sizeBytes, false, { flaky: true }));
  catalog.addBroken("broken");
  return { catalog, volumes, exports, lanes };
}

function memoryLimits(options: FuzzTargetOptions): NbdLimits {
  // Small in-flight and reply-buffer limits, so the fuzzer's bursts make the server pause reading.
  return {
    ...DEFAULT_LIMITS,
    connectionsMax: options.connectionsMax,
    handshakeTimeoutMs: options.handshakeTimeoutMs,
    inflightRequestsMax: 8,
    // The least the server takes: one request of the largest size accepted.
    inflightBytesMax: REQUEST_BYTES_MAX,
    replyBufferBytesMax: 64 * 1024,
  };
}

async function startServer(
  kind: "memory",
  catalog: FuzzCatalog,
  socketPath: string,
  limits: NbdLimits,
  parts: MemoryParts,
): Promise<FuzzServer> {
  const server = await startNbdServer({ catalog, socketPath, limits });
  const inner = catalog.inner;
  return {
    kind,
    server,
    socketPath,
    limits,
    exports: parts.exports,
    busy: new Set(inner.busy),
    broken: new Set(["broken"]),
    lanes: parts.lanes,
    attachedClients: () => [...inner.attached.values()].reduce((sum, count) => sum + count, 0),
    comparisonBases: () => [],
  };
}

async function createPool(laneCount: number): Promise<PoolParts> {
  const metaFile = new MemoryStorageFile("meta");
  const dataFile = new MemoryStorageFile("data");
  const pool = await Pool.formatFiles(metaFile, dataFile, { sizeBytes: POOL_BYTES });
  const served = await ServedPool.start(pool);
  for (let i = 0; i < laneCount; i++) await served.createVolume(`lane-pool-${i}`, LANE_BYTES);
  await served.createVolume(HEALTH_EXPORT, LANE_BYTES);
  await served.createVolume("base", LANE_BYTES);
  const base = await served.open("base");
  await base!.write(0, pattern(LANE_BYTES, RO_PATTERN_SEED));
  await served.snapshot("base", "ro", { readOnly: true });
  return { pool, served, metaFile, dataFile };
}

async function startPoolServer(directory: string, options: FuzzTargetOptions, parts: PoolParts, laneCount: number): Promise<FuzzServer> {
  const exports = new Map<string, ExportFacts>();
  const lanes: string[] = [];
  for (let i = 0; i < laneCount; i++) {
    lanes.push(`lane-pool-${i}`);
    exports.set(`lane-pool-${i}`, facts(`lane-pool-${i}`, LANE_BYTES, false, { model: new ContentModel(LANE_BYTES) }));
  }
  exports.set("ro", facts("ro", LANE_BYTES, true, { model: new ContentModel(LANE_BYTES, pattern(LANE_BYTES, RO_PATTERN_SEED)) }));
  // Written by several workers at once and by mutated streams, so nobody models it; its snapshot "ro" must not change.
  exports.set("base", facts("base", LANE_BYTES, false));
  exports.set(HEALTH_EXPORT, facts(HEALTH_EXPORT, LANE_BYTES, false));
  // A small option limit here (the memory server keeps the default), so one fuzz case can pass it cheaply.
  const limits: NbdLimits = {
    ...DEFAULT_LIMITS,
    connectionsMax: options.connectionsMax,
    handshakeTimeoutMs: options.handshakeTimeoutMs,
    optionsPerHandshakeMax: 64,
  };
  const socketPath = join(directory, "pool.sock");
  const server = await startNbdServer({ catalog: parts.served, socketPath, limits });
  // Every volume of the pool is an export, and each is compared with every other.
  const comparisonBases = (exportName: string) =>
    exports.has(exportName) ? [...exports.keys()].filter((name) => name !== exportName) : [];
  return {
    kind: "pool",
    server,
    socketPath,
    limits,
    exports,
    busy: new Set(),
    broken: new Set(),
    lanes,
    attachedClients: () => null,
    comparisonBases,
  };
}
