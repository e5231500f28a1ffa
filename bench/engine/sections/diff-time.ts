// Section 10: `pool.diff` between two snapshots of a 10^6-block volume. The diff walks both
// mapping trees at once and passes the subtrees they share unread, so its cost must follow
// the blocks that changed between the snapshots, not the volume's size: a diff of 10 changes
// below 1% of a full walk of one volume's mappings, and the time per changed block not
// growing with the count of changes. The cost is per node read (a changed leaf is compared
// entry by entry), so the time per node read is reported too, and must stay flat.

import { assert } from "../../../src/io/assert.js";
import { MemoryStorageFile } from "../../../src/io/memory-storage-file.js";
import { DATA_BLOCK_BYTES } from "../../../src/thin/limits.js";
import { Pool } from "../../../src/thin/pool.js";
import { DIFF_SECTION_VISITS_MAX } from "../../../src/thin/volume-diff.js";
import { mapEveryBlock } from "../support/bulk-mapping.js";
import { MAPPINGS_PER_SECTION, mapKeys } from "../support/mapping-builder.js";
import { formatCount, formatMs, formatPercent, formatRatio, progress, type Section } from "../support/report.js";
import type { ScratchDir } from "../support/scratch-dir.js";
import { randomIndex, seededRandom } from "../support/seeded-random.js";

export const DIFF_VOLUME = "base";
/** Never mapped: a diff against it reads every node of the other tree, which counts them. */
const EMPTY_VOLUME = "empty";
export const DIFF_VOLUME_BLOCKS = 1_000_000;
export const DIFF_CHANGE_COUNTS = [10, 1_000, 100_000] as const;
/**
 * Warm repetitions of each timed walk, the median reported: at least the minimum, and more
 * until the budget is spent, so a walk of a few milliseconds is not judged on five samples
 * a busy machine's scheduler can skew.
 */
const WARM_SAMPLES_MIN = 5;
const WARM_SAMPLES_MAX = 50;
const WARM_BUDGET_MS = 500;
/** The diff of the fewest changes, as a fraction of a full walk of one volume, at most. */
const SMALL_DIFF_FRACTION_MAX = 0.01;
/** Time per changed block at the most changes, over that at the middle count, at most. */
const PER_BLOCK_RATIO_MAX = 2;
/** Warm time per node read, slowest count over fastest, at most. */
const PER_NODE_RATIO_MAX = 2;
/** Room for the remapped blocks beyond them. */
const SPARE_DATA_BLOCKS = 1024;

const snapshotNames = (changeCount: number) => ({ from: `s1-${changeCount}`, to: `s2-${changeCount}` });

interface Timed {
  coldMs: number;
  warmMs: number;
  warmSamples: number;
}

interface WalkMeasure extends Timed {
  /** Nodes of the walked volume's mapping tree. */
  treeNodes: number;
}

interface DiffMeasure extends Timed {
  changeCount: number;
  changedBlocks: number;
  nodesRead: number;
  subtreesSkipped: number;
}

export async function measureDiffTime(scratch: ScratchDir, seed: number): Promise<Section> {
  const { dataPath, metaPath } = scratch.poolPaths("diff");
  const remapped = DIFF_CHANGE_COUNTS.reduce((sum, count) => sum + count, 0);
  const pool = await Pool.create(dataPath, metaPath, { sizeBytes: (DIFF_VOLUME_BLOCKS + remapped + SPARE_DATA_BLOCKS) * DATA_BLOCK_BYTES });
  let buildMs: number;
  try {
    await pool.createVolume(DIFF_VOLUME, DIFF_VOLUME_BLOCKS * DATA_BLOCK_BYTES);
    await pool.createVolume(EMPTY_VOLUME, DIFF_VOLUME_BLOCKS * DATA_BLOCK_BYTES);
    progress(`diff time: mapping all ${formatCount(DIFF_VOLUME_BLOCKS)} blocks of '${DIFF_VOLUME}'`);
    const started = performance.now();
    await mapEveryBlock(pool, DIFF_VOLUME, DIFF_VOLUME_BLOCKS);
    buildMs = performance.now() - started;
    await makeSnapshotPairs(pool, seededRandom(seed ^ 0xd1ff));
  } finally {
    await pool.close();
  }

  await compileDiffCode();
  const measures: DiffMeasure[] = [];
  for (const changeCount of DIFF_CHANGE_COUNTS) {
    progress(`diff time: diff of ${formatCount(changeCount)} changes, cold then warm`);
    measures.push(await measureDiff(metaPath, changeCount));
  }
  progress(`diff time: full walk of ${formatCount(DIFF_VOLUME_BLOCKS)} mappings, cold then warm`);
  const walk = await measureFullWalk(metaPath, snapshotNames(DIFF_CHANGE_COUNTS[0]).from);
  return report(measures, walk, buildMs);
}

/**
 * Runs diffs of a small pool in memory first, so that "cold" measures a cold metadata cache
 * and not the first run of the diff's code, which the first measured diff would otherwise pay
 * for alone (it is most of the time of a 40-node diff).
 */
async function compileDiffCode(): Promise<void> {
  const pool = await Pool.formatFiles(new MemoryStorageFile("meta"), new MemoryStorageFile("data"), {
    sizeBytes: 8192 * DATA_BLOCK_BYTES,
  });
  const blocks = MAPPINGS_PER_SECTION;
  await pool.createVolume("v", blocks * DATA_BLOCK_BYTES);
  await mapKeys(
    pool,
    "v",
    Array.from({ length: blocks }, (_, i) => i),
    0,
    blocks,
  );
  await pool.snapshot("v", "a");
  await mapKeys(
    pool,
    "v",
    Array.from({ length: 60 }, (_, i) => i * 97),
    0,
    60,
  );
  await pool.snapshot("v", "b");
  for (let run = 0; run < 200; run++) for await (const range of pool.diff("a", "b")) void range;
  await pool.close();
}

/**
 * For each change count N: snapshot s1-N of the volume, remap N of its blocks spread across
 * it to fresh data blocks (what a copy-on-write first write does to the metadata, without
 * the 64 KiB copy), snapshot s2-N. The two snapshots then differ in exactly those N blocks.
 */
async function makeSnapshotPairs(pool: Pool, random: () => number): Promise<void> {
  for (const changeCount of DIFF_CHANGE_COUNTS) {
    const { from, to } = snapshotNames(changeCount);
    progress(`diff time: ${from}, ${formatCount(changeCount)} blocks remapped, ${to}`);
    await pool.snapshot(DIFF_VOLUME, from);
    const keys = spreadKeys(changeCount, random);
    for (let start = 0; start < keys.length; start += MAPPINGS_PER_SECTION) {
      await mapKeys(pool, DIFF_VOLUME, keys, start, Math.min(keys.length, start + MAPPINGS_PER_SECTION));
    }
    await pool.snapshot(DIFF_VOLUME, to);
    await pool.commit();
  }
}

/** One block at a seeded random place in each of `count` equal stretches of the volume. */
function spreadKeys(count: number, random: () => number): number[] {
  const stride = Math.floor(DIFF_VOLUME_BLOCKS / count);
  assert(stride >= 1, "no more changes than blocks");
  return Array.from({ length: count }, (_, i) => i * stride + randomIndex(random, stride));
}

/** Opens the closed pool afresh, so the first walk finds no metadata block in thinp's cache. */
async function withReopenedPool<T>(metaPath: string, use: (pool: Pool) => Promise<T>): Promise<T> {
  const pool = await Pool.open(metaPath);
  try {
    return await use(pool);
  } finally {
    await pool.close();
  }
}

/** The first run cold, then the median of the warm runs after it. */
async function coldThenWarm(run: () => Promise<void>): Promise<Timed> {
  const timedRun = async () => {
    const started = performance.now();
    await run();
    return performance.now() - started;
  };
  const coldMs = await timedRun();
  const warm: number[] = [];
  let spentMs = 0;
  while (warm.length < WARM_SAMPLES_MIN || (spentMs < WARM_BUDGET_MS && warm.length < WARM_SAMPLES_MAX)) {
    warm.push(await timedRun());
    spentMs += warm.at(-1)!;
  }
  return { coldMs, warmMs: median(warm), warmSamples: warm.length };
}

async function measureDiff(metaPath: string, changeCount: number): Promise<DiffMeasure> {
  const { from, to } = snapshotNames(changeCount);
  return withReopenedPool(metaPath, async (pool) => {
    let changedBytes = 0;
    const timed = await coldThenWarm(async () => {
      changedBytes = 0;
      for await (const range of pool.diff(from, to)) {
        assert(range.kind === "different", `s1 and s2 map the same blocks, so only remaps differ: got ${range.kind}`);
        changedBytes += range.length;
      }
    });
    const changedBlocks = changedBytes / DATA_BLOCK_BYTES;
    assert(changedBlocks === changeCount, `diff found ${changedBlocks} changed blocks, ${changeCount} were remapped`);
    return { changeCount, changedBlocks, ...timed, ...(await countDiffNodes(pool, from, to)) };
  });
}

/** The nodes pool.diff reads: diffMappings over the same sections it walks, each in its own read section. */
async function countDiffNodes(pool: Pool, from: string, to: string): Promise<{ nodesRead: number; subtreesSkipped: number }> {
  const counts = { nodesRead: 0, subtreesSkipped: 0 };
  for (let start = 0; start < DIFF_VOLUME_BLOCKS;) {
    const section = await pool.transactions.read(async (metadata) =>
      metadata.diffMappings(await metadata.requireVolume(from), await metadata.requireVolume(to), start, DIFF_VOLUME_BLOCKS, () => {}, {
        visitsMax: DIFF_SECTION_VISITS_MAX,
      }),
    );
    counts.nodesRead += section.nodesRead;
    counts.subtreesSkipped += section.subtreesSkipped;
    start = section.resumeAt ?? DIFF_VOLUME_BLOCKS;
  }
  return counts;
}

/** forEachMapping over every block of one snapshot, in one read section. */
async function measureFullWalk(metaPath: string, volumeName: string): Promise<WalkMeasure> {
  return withReopenedPool(metaPath, async (pool) => {
    const timed = await coldThenWarm(async () => {
      let visited = 0;
      await pool.transactions.read(async (metadata) => {
        const state = await metadata.requireVolume(volumeName);
        await metadata.forEachMapping(state, 0, DIFF_VOLUME_BLOCKS, () => void visited++);
      });
      assert(visited === DIFF_VOLUME_BLOCKS, `full walk visited ${visited} mappings`);
    });
    const { nodesRead } = await pool.transactions.read(async (metadata) =>
      metadata.diffMappings(
        await metadata.requireVolume(EMPTY_VOLUME),
        await metadata.requireVolume(volumeName),
        0,
        DIFF_VOLUME_BLOCKS,
        () => {},
      ),
    );
    // Less the empty volume's one leaf.
    return { ...timed, treeNodes: nodesRead - 1 };
  });
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = sorted.length >> 1;
  return sorted.length % 2 === 1 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2;
}

const microseconds = (milliseconds: number) => (milliseconds * 1000).toFixed(milliseconds >= 1 ? 1 : 2);

function report(measures: DiffMeasure[], walk: WalkMeasure, buildMs: number): Section {
  const fewest = measures[0]!;
  const middle = measures[1]!;
  const most = measures[2]!;
  const rows = measures.map((measured) => [
    formatCount(measured.changeCount),
    formatMs(measured.coldMs),
    formatMs(measured.warmMs),
    formatPercent(measured.coldMs / walk.coldMs),
    formatPercent(measured.warmMs / walk.warmMs),
    microseconds(measured.warmMs / measured.changeCount),
    microseconds(measured.warmMs / measured.nodesRead),
    formatCount(measured.nodesRead),
    formatCount(measured.subtreesSkipped),
  ]);
  rows.push([
    `full walk, ${formatCount(DIFF_VOLUME_BLOCKS)} mappings`,
    formatMs(walk.coldMs),
    formatMs(walk.warmMs),
    "100.0 %",
    "100.0 %",
    "",
    microseconds(walk.warmMs / walk.treeNodes),
    formatCount(walk.treeNodes),
    "",
  ]);
  const coldFraction = fewest.coldMs / walk.coldMs;
  const warmFraction = fewest.warmMs / walk.warmMs;
  const perBlock = (measured: DiffMeasure, which: "coldMs" | "warmMs") => measured[which] / measured.changeCount;
  const coldPerBlockRatio = perBlock(most, "coldMs") / perBlock(middle, "coldMs");
  const warmPerBlockRatio = perBlock(most, "warmMs") / perBlock(middle, "warmMs");
  const perNode = measures.map((measured) => measured.warmMs / measured.nodesRead);
  const perNodeRatio = Math.max(...perNode) / Math.min(...perNode);
  const verdict = (passed: boolean, text: string) => `${passed ? "PASS" : "FAIL"}: ${text}`;
  const count = formatCount;
  return {
    title: "10. Diff time between two snapshots against the blocks that changed",
    method: [
      `One file pool, one volume \`${DIFF_VOLUME}\` with all ${count(DIFF_VOLUME_BLOCKS)} blocks mapped (built through the metadata layer as in section 9, ${(buildMs / 1000).toFixed(1)} s, no data written).`,
      `For each N in ${DIFF_CHANGE_COUNTS.map(count).join(", ")}: snapshot \`s1-N\`, remap N blocks of \`${DIFF_VOLUME}\` to fresh data blocks (\`allocateDataBlock\` + \`mapBlock\`, as a copy-on-write first write maps it, without the copy), one at a seeded random place in each of N equal stretches of the volume, then snapshot \`s2-N\` and commit. The pool is closed.`,
      `Diff: \`pool.diff("s1-N", "s2-N")\` consumed to the end (one read section per ${count(DIFF_SECTION_VISITS_MAX)} differing blocks found); the changed bytes it yields are asserted to be N blocks. Cold is the first diff after \`Pool.open\` (thinp's metadata cache empty; the OS page cache still holds the file; the diff's code was run first on a small pool in memory, so cold is not its first run); warm is the median of the runs after it (${WARM_SAMPLES_MIN} to ${WARM_SAMPLES_MAX}, until ${WARM_BUDGET_MS} ms are spent: ${measures.map((measured) => measured.warmSamples).join(", ")} here). Nodes read and shared subtrees skipped are \`PoolMetadata.diffMappings\`' counts over the same sections, untimed.`,
      `Full walk: \`forEachMapping\` over all ${count(DIFF_VOLUME_BLOCKS)} mappings of \`s1-${DIFF_CHANGE_COUNTS[0]}\` in one read section, cold after its own \`Pool.open\`, then warm the same way (${walk.warmSamples} runs); its nodes are counted by a diff against an empty volume. The metadata cache holds 8,192 blocks, so at N = ${count(most.changeCount)} (both trees' leaves differ) some of a warm diff's reads still go to the file.`,
    ],
    tables: [
      {
        headers: [
          "changed blocks",
          "cold ms",
          "warm ms",
          "cold / walk",
          "warm / walk",
          "warm us per change",
          "warm us per node read",
          "nodes read",
          "subtrees skipped",
        ],
        rows,
        numeric: [false, true, true, true, true, true, true, true, true],
      },
    ],
    findings: [
      verdict(
        coldFraction < SMALL_DIFF_FRACTION_MAX && warmFraction < SMALL_DIFF_FRACTION_MAX,
        `a diff of ${count(fewest.changeCount)} changes takes ${formatPercent(coldFraction)} of a full walk cold and ${formatPercent(warmFraction)} warm (limit ${formatPercent(SMALL_DIFF_FRACTION_MAX)}); it reads ${count(fewest.nodesRead)} nodes.`,
      ),
      verdict(
        perNodeRatio <= PER_NODE_RATIO_MAX,
        `the time is per node read: warm, ${perNode.map(microseconds).join(", ")} us per node at ${measures.map((measured) => count(measured.changeCount)).join(", ")} changes, ${formatRatio(perNodeRatio)}x from least to most (limit ${PER_NODE_RATIO_MAX}x), and the nodes read grow with the changed leaves, not the volume's ${count(walk.treeNodes)} nodes.`,
      ),
      verdict(
        coldPerBlockRatio <= PER_BLOCK_RATIO_MAX && warmPerBlockRatio <= PER_BLOCK_RATIO_MAX,
        `time per changed block does not grow with the changes: at ${count(most.changeCount)} it is ${formatRatio(coldPerBlockRatio)}x the time at ${count(middle.changeCount)} cold, ${formatRatio(warmPerBlockRatio)}x warm (limit ${PER_BLOCK_RATIO_MAX}x).`,
      ),
    ],
  };
}
