// Section 5: a pool with a 1 TiB volume and a million mappings, reopened in a fresh
// process, must serve random reads in bounded memory: the metadata is paged through a
// fixed cache, never loaded whole.

import { execFile } from "node:child_process";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { formatCount, formatMs, gibibytes, mebibytes, progress, type Section } from "../support/report.js";
import type { ReopenReport } from "../reopen-reader.js";
import { LARGE_STRIDE_BLOCKS, LARGE_VOLUME, type LargePool } from "./large-pool.js";

const run = promisify(execFile);
const READ_COUNT = 20_000;
export const RSS_LIMIT_KIB = 256 * 1024;
const CHILD_TIMEOUT_MS = 120_000;

export async function measureReopenMemory(built: LargePool, seed: number): Promise<Section> {
  // The pool must be closed: the child takes the owner lock and sees only committed state.
  const readerPath = fileURLToPath(new URL("../reopen-reader.js", import.meta.url));
  progress(`bounded memory: child process reads ${formatCount(READ_COUNT)} x 4 KiB`);
  const child = await run(
    process.execPath,
    [
      readerPath,
      "--meta",
      built.metaPath,
      "--volume",
      LARGE_VOLUME,
      "--reads",
      String(READ_COUNT),
      "--stride",
      String(LARGE_STRIDE_BLOCKS),
      "--seed",
      String(seed),
    ],
    { timeout: CHILD_TIMEOUT_MS, maxBuffer: 1 << 20 },
  );
  // The child prints its report last; an empty output fails to parse, which says enough.
  const report = JSON.parse(child.stdout.trim().split("\n").at(-1) ?? "") as ReopenReport;
  const baseline = await run(process.execPath, ["-e", "process.stdout.write(String(process.resourceUsage().maxRSS))"]);
  const baselineKiB = Number(baseline.stdout);
  const passed = report.maxRssKiB < RSS_LIMIT_KIB;
  return {
    title: "5. Bounded memory: reopen a 1 TiB / 1M-mapping pool in a fresh process",
    method: [
      `The section-4 sequential pool (1 TiB volume, every ${LARGE_STRIDE_BLOCKS}th block mapped) is closed, then \`node dist/bench/engine/reopen-reader.js\` opens it with \`Pool.open\` and does ${formatCount(READ_COUNT)} reads of 4 KiB at random offsets (half of them aimed at mapped blocks), one at a time.`,
      `Peak RSS is the child's \`process.resourceUsage().maxRSS\`. The data file is ${gibibytes(built.dataFileBytes)} GiB apparent, ${mebibytes(built.dataFileAllocatedBytes)} MiB on disk (sparse).`,
    ],
    tables: [
      {
        headers: ["measure", "value"],
        rows: [
          ["open (Pool.open + volume)", `${formatMs(report.openMs)} ms`],
          ["reads (mapped / total)", `${formatCount(report.mappedReadCount)} / ${formatCount(report.readCount)}`],
          ["reads/s (queue depth 1)", formatCount((report.readCount * 1000) / report.readMs)],
          ["heap used at end", `${mebibytes(report.heapUsedBytes)} MiB`],
          ["peak RSS (maxRSS)", `${formatCount(report.maxRssKiB)} KiB (${mebibytes(report.maxRssKiB * 1024)} MiB)`],
          ["bare `node -e` peak RSS, for scale", `${formatCount(baselineKiB)} KiB (${mebibytes(baselineKiB * 1024)} MiB)`],
          ["limit", `${formatCount(RSS_LIMIT_KIB)} KiB (256 MiB)`],
        ],
        numeric: [false, true],
      },
    ],
    findings: [passed ? "PASS: peak RSS is under 256 MiB." : "FAIL: peak RSS is over 256 MiB."],
  };
}
