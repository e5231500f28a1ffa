// `npm run bench`: the engine's numbers, as one markdown report on stdout (progress on
// stderr). Sections follow bench/RESULTS.md: mapping rates, snapshot time, commit cost,
// metadata density, bounded memory on reopen, data-path throughput beside a raw file, check
// time, crash states per second, and the engine at 10^7 mappings.
// `--seed N` reproduces a run's random key orders and offsets.

import { loadavg } from "node:os";
import { parseArgs } from "node:util";
import { describeMachine, renderMachine } from "./engine/support/machine.js";
import { progress, renderSection, type Section } from "./engine/support/report.js";
import { ScratchDir } from "./engine/support/scratch-dir.js";
import { measureReopenMemory } from "./engine/sections/bounded-memory.js";
import { measureCommitCost } from "./engine/sections/commit-cost.js";
import { measureDataPath } from "./engine/sections/data-path.js";
import { buildLargePool } from "./engine/sections/large-pool.js";
import { measureCheckTime } from "./engine/sections/check-time.js";
import { measureCrashRate } from "./engine/sections/crash-rate.js";
import { measureMappingRates } from "./engine/sections/mapping-rate.js";
import { describeMetadataDensity } from "./engine/sections/metadata-density.js";
import { measureScale } from "./engine/sections/scale.js";
import { addSmallVolume, measureSnapshotTime } from "./engine/sections/snapshot-time.js";

const DEFAULT_SEED = 20_240_601;

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { seed: { type: "string" } } });
  const seed = values.seed === undefined ? DEFAULT_SEED : Number(values.seed);
  if (!Number.isSafeInteger(seed)) throw new Error(`--seed must be an integer, got '${values.seed}'`);
  const machine = describeMachine();
  const started = performance.now();
  const scratch = await ScratchDir.create();
  progress(`scratch dir ${scratch.path}, seed ${seed}`);
  const sections = new Map<number, Section>();
  try {
    sections.set(1, await measureMappingRates(scratch, seed));
    sections.set(3, await measureCommitCost(scratch, seed));

    const sequential = await buildLargePool(scratch, "sequential", seed);
    try {
      await addSmallVolume(sequential.pool);
      sections.set(2, await measureSnapshotTime(sequential.pool, sequential.mappingCount));
    } finally {
      await sequential.pool.close();
    }
    sections.set(5, await measureReopenMemory(sequential, seed));

    const random = await buildLargePool(scratch, "random", seed);
    await random.pool.close();
    sections.set(4, describeMetadataDensity([sequential, random]));
    sections.set(7, await measureCheckTime(random, seed));
    sections.set(8, await measureCrashRate(seed));

    sections.set(6, await measureDataPath(scratch, seed));
    sections.set(9, await measureScale(scratch, seed));
  } finally {
    await scratch.remove();
  }
  const elapsedSeconds = (performance.now() - started) / 1000;
  progress(`done in ${elapsedSeconds.toFixed(0)} s`);

  const report = [
    "# thinp engine benchmarks",
    "",
    `Command: \`npm run bench\` (\`node dist/bench/engine.js --seed ${seed}\` after a build). Whole run: ${elapsedSeconds.toFixed(0)} s.`,
    "",
    renderMachine(machine, loadavg()),
    "",
    ...[...sections].sort(([a], [b]) => a - b).map(([, section]) => renderSection(section)),
  ].join("\n");
  process.stdout.write(`${report}\n`);
}

await main();
