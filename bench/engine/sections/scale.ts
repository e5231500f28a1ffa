// Section 9: the engine at 10^7 mappings (610 GiB of mapped data in a sparse data file).
// What must not grow with the pool: a commit after one change, within 2x of the same commit
// at 10^5 mappings; a snapshot. What must stay bounded: `check` under 30 s, and the memory
// of a fresh process serving random reads across the whole volume under 256 MiB.

import { execFile } from "node:child_process";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { METADATA_BLOCK_BYTES } from "../../../src/pdata/block-format.js";
import { checkPool } from "../../../src/thin/check.js";
import type { ReopenReport } from "../reopen-reader.js";
import { BULK_MAPPINGS_PER_COMMIT, BULK_MAPPINGS_PER_SECTION } from "../support/bulk-mapping.js";
import { mapKeys } from "../support/mapping-builder.js";
import { formatCount, formatMs, formatRatio, gibibytes, mebibytes, progress, type Section } from "../support/report.js";
import { SCALE_VOLUME, buildScalePool, openCounted, removeScalePool, type CountedPool, type ScalePool } from "../support/scale-pool.js";
import type { ScratchDir } from "../support/scratch-dir.js";
import { randomIndex, seededRandom } from "../support/seeded-random.js";
import { RSS_LIMIT_KIB } from "./bounded-memory.js";

const run = promisify(execFile);

export const SCALE_MAPPINGS = 10_000_000;
export const BASE_MAPPINGS = 100_000;
/** Measured commits (and snapshots) per pool, after the warm-up ones. */
const SAMPLES = 40;
/** The first commits after opening also move what the build left behind; not counted. */
const WARMUP_SAMPLES = 5;
const COMMIT_RATIO_MAX = 2;
/** As in section 2: a flat snapshot may still wobble with caches and fsyncs, but not past this. */
const SNAPSHOT_RATIO_MAX = 3;
const CHECK_SECONDS_MAX = 30;
const READ_COUNT = 20_000;
const CHILD_TIMEOUT_MS = 300_000;

interface Samples {
  commitMs: number[];
  commitBlocks: number[];
  commitSyncs: number[];
  snapshotMs: number[];
  snapshotCommitMs: number[];
}

export async function measureScale(scratch: ScratchDir, seed: number): Promise<Section> {
  const base = await buildScalePool(scratch, "scale-1e5", BASE_MAPPINGS);
  let large: ScalePool | null = null;
  try {
    large = await buildScalePool(scratch, "scale-1e7", SCALE_MAPPINGS);
    const [baseSamples, largeSamples] = await measureBoth([base, large], seed);

    progress(`scale: checking ${formatCount(SCALE_MAPPINGS)} mappings`);
    const checkStarted = performance.now();
    const check = await checkPool(large.metaPath);
    const checkMs = performance.now() - checkStarted;

    progress(`scale: a fresh process reads ${formatCount(READ_COUNT)} x 4 KiB across the whole volume`);
    const reader = await readInChild(large, seed);
    return report(base, large, baseSamples, largeSamples, check.clean, check.verified.treeNodes, checkMs, reader);
  } finally {
    await removeScalePool(base);
    if (large) await removeScalePool(large);
  }
}

/** Both pools open at once, measured in turn, so a change in the machine's load lands on both. */
async function measureBoth(pools: [ScalePool, ScalePool], seed: number): Promise<[Samples, Samples]> {
  const random = seededRandom(seed ^ 0x5ca1e);
  const opened: CountedPool[] = [];
  try {
    for (const built of pools) opened.push(await openCounted(built));
    const samples = pools.map(emptySamples) as [Samples, Samples];
    progress("scale: commits after one change, and snapshots, in both pools");
    for (let round = 0; round < WARMUP_SAMPLES + SAMPLES; round++) {
      for (const [i, counted] of opened.entries()) {
        const measured = await measureRound(counted, pools[i]!.mappingCount, random, round);
        if (round >= WARMUP_SAMPLES) addSamples(samples[i]!, measured);
      }
    }
    return samples;
  } finally {
    for (const counted of opened) await counted.pool.close();
  }
}

function emptySamples(): Samples {
  return { commitMs: [], commitBlocks: [], commitSyncs: [], snapshotMs: [], snapshotCommitMs: [] };
}

function addSamples(into: Samples, one: { [K in keyof Samples]: number }): void {
  for (const key of Object.keys(into) as (keyof Samples)[]) into[key].push(one[key]);
}

/** One commit after remapping one random block (as a first write after a snapshot would), one snapshot, one snapshot + commit. */
async function measureRound({ pool, metaFile, dataFile }: CountedPool, mappingCount: number, random: () => number, round: number) {
  await mapKeys(pool, SCALE_VOLUME, [randomIndex(random, mappingCount)], 0, 1);
  metaFile.resetCounts();
  dataFile.resetCounts();
  let started = performance.now();
  await pool.commit();
  const commitMs = performance.now() - started;
  const commitBlocks = metaFile.writtenBytes / METADATA_BLOCK_BYTES;
  const commitSyncs = metaFile.syncCount + dataFile.syncCount;

  started = performance.now();
  await pool.snapshot(SCALE_VOLUME, `snap-${round}`);
  const snapshotMs = performance.now() - started;
  await pool.deleteVolume(`snap-${round}`);
  await pool.commit();

  started = performance.now();
  await pool.snapshot(SCALE_VOLUME, `snap-${round}-c`);
  await pool.commit();
  const snapshotCommitMs = performance.now() - started;
  await pool.deleteVolume(`snap-${round}-c`);
  await pool.commit();
  return { commitMs, commitBlocks, commitSyncs, snapshotMs, snapshotCommitMs };
}

async function readInChild(large: ScalePool, seed: number): Promise<ReopenReport> {
  // The pool is closed: the child takes the owner lock and sees only committed state.
  const readerPath = fileURLToPath(new URL("../reopen-reader.js", import.meta.url));
  const child = await run(
    process.execPath,
    [
      readerPath,
      "--meta",
      large.metaPath,
      "--volume",
      SCALE_VOLUME,
      "--reads",
      String(READ_COUNT),
      "--stride",
      "1",
      "--seed",
      String(seed),
    ],
    { timeout: CHILD_TIMEOUT_MS, maxBuffer: 1 << 20 },
  );
  // The child prints its report last; an empty output fails to parse, which says enough.
  return JSON.parse(child.stdout.trim().split("\n").at(-1) ?? "") as ReopenReport;
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = sorted.length >> 1;
  return sorted.length % 2 === 1 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2;
}

function mean(values: number[]): number {
  return values.reduce((sum, value) => sum + value, 0) / values.length;
}

function report(
  base: ScalePool,
  large: ScalePool,
  baseSamples: Samples,
  largeSamples: Samples,
  checkClean: boolean,
  treeNodes: number,
  checkMs: number,
  reader: ReopenReport,
): Section {
  const compared = (label: string, values: (samples: Samples) => number[], summary: (values: number[]) => number, format = formatMs) => {
    const small = summary(values(baseSamples));
    const big = summary(values(largeSamples));
    return { row: [label, format(small), format(big), formatRatio(big / small)], ratio: big / small };
  };
  const commitMedian = compared("commit after 1 change, median ms", (s) => s.commitMs, median);
  const commitMean = compared("commit after 1 change, mean ms", (s) => s.commitMs, mean);
  const commitBlocks = compared(
    "metadata blocks written per commit, mean",
    (s) => s.commitBlocks,
    mean,
    (v) => v.toFixed(1),
  );
  const commitSyncs = compared(
    "fsyncs per commit, mean",
    (s) => s.commitSyncs,
    mean,
    (v) => v.toFixed(1),
  );
  const snapshot = compared("snapshot, median ms", (s) => s.snapshotMs, median);
  const snapshotCommit = compared("snapshot + commit, median ms", (s) => s.snapshotCommitMs, median);
  const checkSeconds = checkMs / 1000;
  const verdict = (passed: boolean, text: string) => `${passed ? "PASS" : "FAIL"}: ${text}`;
  return {
    title: "9. Scale: 10^7 mappings",
    method: [
      `Two file pools, each one volume with every block mapped in order: ${formatCount(BASE_MAPPINGS)} and ${formatCount(SCALE_MAPPINGS)} mappings (${gibibytes(SCALE_MAPPINGS * 65536)} GiB of mapped data; the data file is ${gibibytes(large.dataFileBytes)} GiB apparent, ${mebibytes(large.dataFileAllocatedBytes)} MiB on disk).`,
      `Built through the metadata layer (\`allocateDataBlock\` + \`mapBlock\` in \`pool.transactions.change\` sections of ${formatCount(BULK_MAPPINGS_PER_SECTION)}, a commit every ${formatCount(BULK_MAPPINGS_PER_COMMIT)}; bench/engine/support/bulk-mapping.ts), no data written. The 10^7 build took ${(large.buildMs / 1000).toFixed(0)} s (${formatCount((large.mappingCount * 1000) / large.buildMs)} mappings/s); its metadata file is ${formatCount(large.metadataBlocksTotal)} blocks, ${formatCount(large.metadataBlocksUsed)} in use.`,
      `Both pools are then open at once and measured in turn, ${SAMPLES} rounds after ${WARMUP_SAMPLES} unmeasured: remap one random mapped block to a fresh data block (untimed), time \`pool.commit()\`; time \`pool.snapshot\`, and \`snapshot\` + \`commit\` (each snapshot deleted again, untimed). Verdicts take medians: a few stalled fsyncs on a shared machine swing the mean of a millisecond.`,
      `Then \`checkPool\` on the closed 10^7 pool, and \`node dist/bench/engine/reopen-reader.js --stride 1\` in a fresh process: \`Pool.open\`, then ${formatCount(READ_COUNT)} reads of 4 KiB at random offsets across the whole ${formatCount(SCALE_MAPPINGS)}-block volume, one at a time; its peak RSS is \`process.resourceUsage().maxRSS\`. The pools' files are deleted afterwards.`,
    ],
    tables: [
      {
        headers: ["measure", `${formatCount(BASE_MAPPINGS)} mappings`, `${formatCount(SCALE_MAPPINGS)} mappings`, "ratio"],
        rows: [commitMedian, commitMean, commitBlocks, commitSyncs, snapshot, snapshotCommit].map((measured) => measured.row),
        numeric: [false, true, true, true],
      },
      {
        headers: [`${formatCount(SCALE_MAPPINGS)}-mapping pool`, "value"],
        rows: [
          ["check time", `${formatMs(checkMs)} ms`],
          ["check clean", String(checkClean)],
          ["distinct tree nodes checked", formatCount(treeNodes)],
          ["reader: open (Pool.open + volume)", `${formatMs(reader.openMs)} ms`],
          ["reader: reads (mapped / total)", `${formatCount(reader.mappedReadCount)} / ${formatCount(reader.readCount)}`],
          ["reader: reads/s (queue depth 1)", formatCount((reader.readCount * 1000) / reader.readMs)],
          ["reader: heap used at end", `${mebibytes(reader.heapUsedBytes)} MiB`],
          ["reader: peak RSS (maxRSS)", `${formatCount(reader.maxRssKiB)} KiB (${mebibytes(reader.maxRssKiB * 1024)} MiB)`],
        ],
        numeric: [false, true],
      },
    ],
    findings: [
      verdict(
        commitMedian.ratio <= COMMIT_RATIO_MAX,
        `a commit after 1 change at 10^7 mappings takes ${formatRatio(commitMedian.ratio)}x the one at 10^5 (limit ${COMMIT_RATIO_MAX}x; it writes ${formatRatio(commitBlocks.ratio)}x the metadata blocks).`,
      ),
      verdict(
        snapshot.ratio <= SNAPSHOT_RATIO_MAX && snapshotCommit.ratio <= SNAPSHOT_RATIO_MAX,
        `snapshot is flat: ${formatRatio(snapshot.ratio)}x, and ${formatRatio(snapshotCommit.ratio)}x with its commit (limit ${SNAPSHOT_RATIO_MAX}x).`,
      ),
      verdict(
        checkClean && checkSeconds < CHECK_SECONDS_MAX,
        `check at 10^7 mappings takes ${checkSeconds.toFixed(1)} s, clean: ${checkClean} (limit ${CHECK_SECONDS_MAX} s).`,
      ),
      verdict(
        reader.maxRssKiB < RSS_LIMIT_KIB,
        `peak RSS of the reader is ${mebibytes(reader.maxRssKiB * 1024)} MiB (limit ${RSS_LIMIT_KIB / 1024} MiB).`,
      ),
    ],
  };
}
