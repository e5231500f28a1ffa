// Section 2: a snapshot shares the origin's mapping tree, so its cost must not depend on
// how many blocks the origin maps. Both volumes live in the same pool, so the only
// difference between the two measurements is the size of the tree.

import { DATA_BLOCK_BYTES } from "../../../src/thin/limits.js";
import type { Pool } from "../../../src/thin/pool.js";
import { mapFreshBlocks } from "../support/mapping-builder.js";
import { formatCount, formatMs, formatRatio, progress, type Section } from "../support/report.js";
import { stridedKeys } from "../support/seeded-random.js";
import { formatRme, newBench, statsOf, type IterationStats } from "../support/tinybench-stats.js";
import { LARGE_VOLUME } from "./large-pool.js";

export const SMALL_VOLUME = "small";
export const SMALL_MAPPINGS = 1000;
/** A flat snapshot may still wobble with caches and fsyncs; past this ratio it is not flat. */
const FLAT_RATIO_MAX = 3;

export async function addSmallVolume(pool: Pool): Promise<void> {
  await pool.createVolume(SMALL_VOLUME, SMALL_MAPPINGS * DATA_BLOCK_BYTES);
  await mapFreshBlocks(pool, SMALL_VOLUME, stridedKeys(SMALL_MAPPINGS, 1));
}

export async function measureSnapshotTime(pool: Pool, largeMappings: number): Promise<Section> {
  let serial = 0;
  let taken: string | null = null;
  const snapshotName = (origin: string) => (taken = `${origin}-snap-${serial++}`);
  // Each snapshot is deleted again (untimed), so every iteration snapshots the same origin
  // in the same pool: deleting a snapshot whose tree is still shared only drops a reference.
  const dropSnapshot = {
    afterEach: async () => {
      if (taken === null) return;
      await pool.deleteVolume(taken);
      await pool.commit();
      taken = null;
    },
  };
  // A fixed iteration count, not a time budget: the untimed delete + commit after each
  // sub-millisecond snapshot would otherwise stretch a 500 ms budget into many seconds.
  const bench = newBench({ time: 1, iterations: 200 });
  for (const origin of [SMALL_VOLUME, LARGE_VOLUME]) {
    bench.add(`snapshot ${origin}`, async () => void (await pool.snapshot(origin, snapshotName(origin))), dropSnapshot);
    bench.add(
      `snapshot + commit ${origin}`,
      async () => {
        await pool.snapshot(origin, snapshotName(origin));
        await pool.commit();
      },
      dropSnapshot,
    );
  }
  progress("snapshot time: running tinybench");
  await bench.run();

  const stats = (name: string): IterationStats => statsOf(bench.getTask(name));
  const mappingsOf = { [SMALL_VOLUME]: SMALL_MAPPINGS, [LARGE_VOLUME]: largeMappings };
  const rows: string[][] = [];
  const ratios: number[] = [];
  for (const operation of ["snapshot", "snapshot + commit"]) {
    const small = stats(`${operation} ${SMALL_VOLUME}`);
    const large = stats(`${operation} ${LARGE_VOLUME}`);
    ratios.push(large.meanMs / small.meanMs);
    for (const [origin, measured] of [
      [SMALL_VOLUME, small],
      [LARGE_VOLUME, large],
    ] as const) {
      rows.push([
        operation,
        formatCount(mappingsOf[origin]),
        formatMs(measured.meanMs),
        formatMs(measured.p99Ms),
        formatRme(measured),
        String(measured.sampleCount),
      ]);
    }
    rows.push([`${operation}: 1M / 1k ratio`, "", formatRatio(large.meanMs / small.meanMs), "", "", ""]);
  }
  const flat = ratios.every((ratio) => ratio <= FLAT_RATIO_MAX);
  return {
    title: "2. Snapshot time against origin size",
    method: [
      `Two volumes in one file pool: one with ${formatCount(SMALL_MAPPINGS)} mapped blocks, one with ${formatCount(largeMappings)} (built through the metadata layer, committed every 50k).`,
      "`snapshot` is `pool.snapshot(origin, name)`; `snapshot + commit` also makes it durable. Each snapshot is deleted and committed again after its iteration (untimed).",
    ],
    tables: [
      {
        headers: ["operation", "origin mappings", "mean ms", "p99 ms", "rme", "samples"],
        rows,
        numeric: [false, true, true, true, true, true],
      },
    ],
    findings: [
      flat
        ? `Flat: the 1M-mapping origin snapshots within ${FLAT_RATIO_MAX}x of the 1k one (ratios ${ratios.map(formatRatio).join(" and ")}).`
        : `NOT flat: ratios ${ratios.map(formatRatio).join(" and ")} exceed ${FLAT_RATIO_MAX}x.`,
    ],
  };
}
