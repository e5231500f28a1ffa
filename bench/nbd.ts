// `npm run bench:nbd`: fio over NBD against `thinp serve` and, on the same disk in the same
// run, qemu-nbd (raw and qcow2) and nbdkit's file plugin. Prints one markdown report on
// stdout (progress on stderr); the NBD section of bench/RESULTS.md is a saved copy. No speed
// is asserted: the table is the record.
//
//   --workloads 1,2,3   run only these workloads (default: all, 1 to 6)
//   --cpu-prof DIR      write a V8 CPU profile of every thinp server process into DIR

import { rmSync } from "node:fs";
import { rm } from "node:fs/promises";
import { resolve } from "node:path";
import { parseArgs } from "node:util";
import { createBenchDir } from "./nbd/bench-dir.js";
import { nbdkitFile, qemuNbdQcow2, qemuNbdRaw, thinp, type Contender } from "./nbd/contenders.js";
import { renderCpuTable } from "./nbd/cpu-table.js";
import { Measurements } from "./nbd/measurements.js";
import {
  CONNECTION_IODEPTH,
  CONNECTIONS,
  CONNECTIONS_SECONDS,
  flushEachWrite,
  FLUSH_EACH_WRITE_SECONDS,
  multiConnection,
  random,
  withPreWrittenExports,
} from "./nbd/pre-written-workloads.js";
import { COMMIT_READ_SECONDS, readsDuringCommits, WRITER_FLUSH_EVERY_WRITES, WRITER_RATE_IOPS } from "./nbd/reads-during-commits.js";
import { loadAverages, renderMachine, renderResultsTable, renderSpreadTable } from "./nbd/report.js";
import { killAllServers } from "./nbd/server-process.js";
import { renderTargetsTable } from "./nbd/targets.js";
import { RANDOM_SECONDS, ROUNDS, WARM_UP_SECONDS, type WorkloadContext } from "./nbd/workload-context.js";
import { sequential, snapshotWrites } from "./nbd/workloads.js";

const WORKLOAD_IDS = ["1", "2", "3", "4", "5", "6"];
/** The workloads that share one pre-written export per server, set up once for all of them. */
const PRE_WRITTEN_WORKLOADS = ["2", "4", "5", "6"];

function progress(message: string): void {
  process.stderr.write(`[bench:nbd] ${message}\n`);
}

function parseOptions(): { workloads: Set<string>; cpuProfileDir?: string } {
  const { values } = parseArgs({ options: { workloads: { type: "string" }, "cpu-prof": { type: "string" } } });
  const workloads = new Set((values.workloads ?? WORKLOAD_IDS.join(",")).split(","));
  for (const id of workloads) {
    if (!WORKLOAD_IDS.includes(id)) throw new Error(`--workloads takes ${WORKLOAD_IDS.join(",")}; got '${id}'`);
  }
  const profile = values["cpu-prof"];
  return { workloads, cpuProfileDir: profile === undefined ? undefined : resolve(profile) };
}

async function main(): Promise<void> {
  const { workloads, cpuProfileDir } = parseOptions();
  const date = new Date();
  const started = performance.now();
  const benchDir = await createBenchDir();
  for (const signal of ["SIGINT", "SIGTERM"] as const) {
    process.once(signal, () => {
      killAllServers();
      rmSync(benchDir, { recursive: true, force: true });
      process.exit(130);
    });
  }
  progress(`bench dir ${benchDir}`);
  const machine = renderMachine(benchDir, date);
  const loadBefore = loadAverages();
  const context: WorkloadContext = {
    scratchDir: benchDir,
    options: { cpuProfileDir },
    measurements: new Measurements(),
    cpuPerRequest: new Measurements(),
    progress,
  };
  const contenders: Contender[] = [thinp(context.options), qemuNbdRaw, qemuNbdQcow2, nbdkitFile];
  try {
    if (workloads.has("1")) await sequential(context, contenders);
    if (PRE_WRITTEN_WORKLOADS.some((id) => workloads.has(id))) {
      await withPreWrittenExports(context, contenders, async (exports) => {
        if (workloads.has("2")) await random(context, exports);
        if (workloads.has("4")) await multiConnection(context, exports);
        if (workloads.has("5")) await flushEachWrite(context, exports);
        if (workloads.has("6")) await readsDuringCommits(context, exports);
      });
    }
    if (workloads.has("3")) await snapshotWrites(context);
  } finally {
    killAllServers();
    await rm(benchDir, { recursive: true, force: true });
  }
  const elapsedSeconds = (performance.now() - started) / 1000;
  progress(`done in ${elapsedSeconds.toFixed(0)} s`);

  const command =
    workloads.size === WORKLOAD_IDS.length
      ? "node dist/bench/nbd.js"
      : `node dist/bench/nbd.js --workloads ${[...workloads].sort().join(",")}`;
  const report = [
    // The section of bench/RESULTS.md this run's output is saved as.
    "## NBD (npm run bench:nbd)",
    "",
    `Command: \`npm run bench:nbd\` (\`${command}\` after a build). Whole run: ${elapsedSeconds.toFixed(0)} s.`,
    "",
    machine,
    "",
    `- load average (1, 5, 15 min) at the start: ${loadBefore}; at the end: ${loadAverages()}. fio, the server under test and any other work on the machine share its CPUs.`,
    "",
    "How it ran:",
    "",
    "- fio's nbd engine (libnbd) over TCP on 127.0.0.1, one job on one connection unless a workload says otherwise. Every server's files live in the bench dir above, on the same disk; every export is 1 GiB (a thin volume in a new pool; a sparse raw file; a new qcow2).",
    "- Page cache as each server uses it: thinp writes through the page cache and syncs data and commits metadata on NBD_CMD_FLUSH; qemu-nbd runs `--cache=writeback --aio=threads`; nbdkit's file plugin runs with its defaults. Reads of data just written come from the page cache for every server.",
    `- Every number is the median of ${ROUNDS} rounds in which the servers take turns, a different one first each round, so a change in background load lands on all of them; the last table gives each lowest and highest sample. \`sync\` runs before every measured job, so no server pays for writing back another's dirty pages.`,
    `- Every time-based job first runs ${WARM_UP_SECONDS} s unmeasured, as a fio run of its own with offsets from another seed (\`--randseed=1\`), then measured. No job uses \`--ramp_time\`, which fio would leave out of its request counts, so the counts cover the whole measured run.`,
    "- Server CPU per request: user + system time of the server process (utime + stime, /proc/PID/stat fields 14 and 15, in clock ticks of 10 ms: `getconf CLK_TCK` is 100), read just before the measured fio process starts and just after it exits, divided by the requests fio completed in that run (reads, writes and flushes: fio's `total_ios`, summed over connections). Connecting and disconnecting fall inside the reading, which makes the figure a little high, not low. The PID is the server's own, spawned directly: thinp's node process (`bench/nbd/thinp-server.ts`), qemu-nbd (no `--fork`), nbdkit (`--foreground`); the times cover all their threads.",
    "- 1: each round a fresh export per server. Sequential writes end with one flush (`--end_fsync=1`); fio's MB/s leaves it out, the next row divides the bytes by the whole fio run instead, start-up and flush included.",
    `- 2: one export per server, its first 512 MiB written sequentially and flushed, all servers up throughout workloads 2, 4, 5 and 6, which all work in that region. Random jobs are time-based, ${RANDOM_SECONDS} s measured per round, with fio's default seeded offsets, so every server sees the same sequence.`,
    "- 3: a 1 GiB export written in full and flushed, its server stopped; then each round a fresh thinp snapshot of it (`bench/nbd/thinp-server.ts` deletes the last round's snapshot and calls `Pool.snapshot`) or a fresh overlay on it (`qemu-img create -f qcow2 -b base.qcow2 -F qcow2`), served and written for the same time as in 2 over the whole 1 GiB. Both copy 64 KiB units (a thinp data block, a qcow2 cluster) on the first write to each; as a run goes on, more writes land in units already copied.",
    `- 4: the jobs of 2 on ${CONNECTIONS} connections at once: \`--numjobs=${CONNECTIONS} --iodepth=${CONNECTION_IODEPTH} --group_reporting\`, each fio job with its own NBD connection, ${CONNECTIONS_SECONDS} s measured per round. qemu-nbd runs \`--shared=8\`; nbdkit and thinp set no connection limit.`,
    `- 5: a database's pattern: 4 KiB random writes at queue depth 1, each followed by a flush (\`--fsync=1\`), ${FLUSH_EACH_WRITE_SECONDS} s measured per round. IOPS counts the writes; the CPU per request counts writes and flushes as requests.`,
    `- 6: each round and server, the 4 KiB QD16 random read job of 2 for ${COMMIT_READ_SECONDS} s alone, then again while a second fio process on its own connection writes 4 KiB at queue depth 1 to random offsets in the other 512 MiB of the export (unwritten before the first round, so writes allocate; \`--randseed=100\` plus the round, so rounds write different offsets), at \`--rate_iops=${WRITER_RATE_IOPS} --fsync=${WRITER_FLUSH_EVERY_WRITES}\`: a flush every 100 ms, each a commit for thinp. The writer starts 1 s before the reads and is stopped (SIGTERM) when they end. The drop is (alone − with writer) ÷ alone per round, median of the rounds. The CPU reading of the run with the writer spans the writer's whole run and is divided by the requests of both.`,
    "",
    renderResultsTable(context.measurements),
    "",
    "Ratios are thinp's median over the peer's: above 1, thinp is faster.",
    "",
    "Targets (from the issue), each on thinp's median; a ratio target is against the best of the named peers' medians in this run:",
    "",
    renderTargetsTable(context.measurements, context.cpuPerRequest),
    "",
    "Server CPU per request, µs, median of the rounds (user + system time of the server process over the requests fio completed):",
    "",
    renderCpuTable(context.cpuPerRequest),
    "",
    `Lowest–highest of the ${ROUNDS} samples:`,
    "",
    renderSpreadTable(context.measurements),
  ].join("\n");
  process.stdout.write(`${report}\n`);
}

await main();
