// `npm run bench`: the engine's numbers, as one markdown report on stdout (progress on
// stderr). Sections follow bench/RESULTS.md: mapping rates, snapshot time, commit cost,
// metadata density, bounded memory on reopen, data-path throughput beside a raw file, check
// time, crash states per second, the engine at 10^7 mappings, and diff time between two
// snapshots against the blocks that changed between them.
// `--seed N` reproduces a run's random key orders and offsets. `--only N` runs section N
// alone (and builds only the pools it needs), for checking one section quickly.

import { loadavg } from "node:os";
import { parseArgs } from "node:util";
import type { LargePool } from "./engine/sections/large-pool.js";
import { describeMachine, renderMachine } from "./engine/support/machine.js";
import { progress, renderSection, type Section } from "./engine/support/report.js";
import { ScratchDir } from "./engine/support/scratch-dir.js";
import { measureReopenMemory } from "./engine/sections/bounded-memory.js";
import { measureCommitCost } from "./engine/sections/commit-cost.js";
import { measureDiffTime } from "./engine/sections/diff-time.js";
import { measureDataPath } from "./engine/sections/data-path.js";
import { buildLargePool } from "./engine/sections/large-pool.js";
import { measureCheckTime } from "./engine/sections/check-time.js";
import { measureCrashRate } from "./engine/sections/crash-rate.js";
import { measureMappingRates } from "./engine/sections/mapping-rate.js";
import { describeMetadataDensity } from "./engine/sections/metadata-density.js";
import { measureScale } from "./engine/sections/scale.js";
import { addSmallVolume, measureSnapshotTime } from "./engine/sections/snapshot-time.js";

const DEFAULT_SEED = 20_240_601;
const SECTION_COUNT = 10;

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { seed: { type: "string" }, only: { type: "string" } } });
  const seed = values.seed === undefined ? DEFAULT_SEED : Number(values.seed);
  if (!Number.isSafeInteger(seed)) throw new Error(`--seed must be an integer, got '${values.seed}'`);
  const only = values.only === undefined ? null : Number(values.only);
  if (only !== null && !(Number.isInteger(only) && only >= 1 && only <= SECTION_COUNT)) {
    throw new Error(`--only must be a section number from 1 to ${SECTION_COUNT}, got '${values.only}'`);
  }
  const wanted = (...numbers: number[]) => only === null || numbers.includes(only);
  const machine = describeMachine();
  const started = performance.now();
  const scratch = await ScratchDir.create();
  progress(`scratch dir ${scratch.path}, seed ${seed}${only === null ? "" : `, section ${only} only`}`);
  const sections = new Map<number, Section>();
  try {
    if (wanted(1)) sections.set(1, await measureMappingRates(scratch, seed));
    if (wanted(3)) sections.set(3, await measureCommitCost(scratch, seed));

    // Sections 2, 4 and 5 share the sequential million-mapping pool; 4 and 7 the random one.
    const largePools: LargePool[] = [];
    if (wanted(2, 4, 5)) {
      const sequential = await buildLargePool(scratch, "sequential", seed);
      try {
        if (wanted(2)) {
          await addSmallVolume(sequential.pool);
          sections.set(2, await measureSnapshotTime(sequential.pool, sequential.mappingCount));
        }
      } finally {
        await sequential.pool.close();
      }
      if (wanted(5)) sections.set(5, await measureReopenMemory(sequential, seed));
      largePools.push(sequential);
    }
    if (wanted(4, 7)) {
      const random = await buildLargePool(scratch, "random", seed);
      await random.pool.close();
      largePools.push(random);
      if (wanted(4)) sections.set(4, describeMetadataDensity(largePools));
      if (wanted(7)) sections.set(7, await measureCheckTime(random, seed));
    }
    if (wanted(8)) sections.set(8, await measureCrashRate(seed));

    if (wanted(6)) sections.set(6, await measureDataPath(scratch, seed));
    if (wanted(9)) sections.set(9, await measureScale(scratch, seed));
    if (wanted(10)) sections.set(10, await measureDiffTime(scratch, seed));
  } finally {
    await scratch.remove();
  }
  const elapsedSeconds = (performance.now() - started) / 1000;
  progress(`done in ${elapsedSeconds.toFixed(0)} s`);

  const report = [
    "# thinp engine benchmarks",
    "",
    only === null
      ? `Command: \`npm run bench\` (\`node dist/bench/engine.js --seed ${seed}\` after a build). Whole run: ${elapsedSeconds.toFixed(0)} s.`
      : `Command: \`node dist/bench/engine.js --seed ${seed} --only ${only}\` after \`npm run build\`. Section ${only} alone: ${elapsedSeconds.toFixed(0)} s.`,
    "",
    renderMachine(machine, loadavg()),
    "",
    ...[...sections].sort(([a], [b]) => a - b).map(([, section]) => renderSection(section)),
  ].join("\n");
  process.stdout.write(`${report}\n`);
}

await main();
