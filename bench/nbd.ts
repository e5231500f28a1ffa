// `npm run bench:nbd`: fio over NBD against `thinp serve` and, on the same disk in the same
// run, qemu-nbd (raw and qcow2) and nbdkit's file plugin. Prints one markdown report on
// stdout (progress on stderr); bench/RESULTS-nbd.md is a saved copy. No speed is asserted:
// the table is the record.
//
//   --workloads 1,2,3   run only these workloads (default: all)
//   --cpu-prof DIR      write a V8 CPU profile of every thinp server process into DIR

import { rm } from "node:fs/promises";
import { resolve } from "node:path";
import { parseArgs } from "node:util";
import { createBenchDir } from "./nbd/bench-dir.js";
import { nbdkitFile, qemuNbdQcow2, qemuNbdRaw, thinp, type Contender } from "./nbd/contenders.js";
import { loadAverages, renderMachine, renderResultsTable } from "./nbd/report.js";
import { killAllServers } from "./nbd/server-process.js";
import {
  RANDOM_SECONDS,
  emptyMeasurements,
  random,
  sequential,
  snapshotWrites,
  type WorkloadContext,
} from "./nbd/workloads.js";

const WORKLOAD_IDS = ["1", "2", "3"];

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
  for (const signal of ["SIGINT", "SIGTERM"] as const) {
    process.once(signal, () => {
      killAllServers();
      process.exit(130);
    });
  }
  const date = new Date();
  const started = performance.now();
  const benchDir = await createBenchDir();
  progress(`bench dir ${benchDir}`);
  const machine = renderMachine(benchDir, date);
  const loadBefore = loadAverages();
  const context: WorkloadContext = {
    scratchDir: benchDir,
    options: { cpuProfileDir },
    measurements: emptyMeasurements(),
    progress,
  };
  const contenders: Contender[] = [thinp(context.options), qemuNbdRaw, qemuNbdQcow2, nbdkitFile];
  try {
    if (workloads.has("1")) for (const contender of contenders) await sequential(context, contender);
    if (workloads.has("2")) for (const contender of contenders) await random(context, contender);
    if (workloads.has("3")) await snapshotWrites(context);
  } finally {
    killAllServers();
    await rm(benchDir, { recursive: true, force: true });
  }
  const elapsedSeconds = (performance.now() - started) / 1000;
  progress(`done in ${elapsedSeconds.toFixed(0)} s`);

  const report = [
    "# NBD servers under fio",
    "",
    `Command: \`npm run bench:nbd\` (\`node dist/bench/nbd.js\` after a build). Whole run: ${elapsedSeconds.toFixed(0)} s.`,
    "",
    machine,
    `- load average (1, 5, 15 min) at the start: ${loadBefore}; at the end: ${loadAverages()}. fio, the server under test and any other work on the machine share its CPUs.`,
    "",
    "How it ran:",
    "",
    "- fio's nbd engine (libnbd) over TCP on 127.0.0.1, one job, one connection per server. Every server's files live in the bench dir above, on the same disk; each workload gets a fresh 1 GiB export per server (a thin volume in a new pool; a sparse raw file; a new qcow2).",
    "- Page cache as each server uses it: thinp writes through the page cache and syncs data and commits metadata on NBD_CMD_FLUSH; qemu-nbd runs `--cache=writeback --aio=threads`; nbdkit's file plugin runs with its defaults. Reads of data just written come from the page cache for every server.",
    "- Sequential writes end with one flush (`--end_fsync=1`); fio's MB/s leaves it out, the next row divides the bytes by the whole fio run instead, start-up and flush included.",
    `- Random jobs are time-based: 1 s ramp, then ${RANDOM_SECONDS} s measured, with fio's default seeded offsets, so every server sees the same sequence.`,
    "- Workload 3 writes the whole 1 GiB export and flushes it, stops the server, then takes a fresh thinp snapshot (`thinp-server.ts` calls `Pool.snapshot`) or creates a fresh overlay (`qemu-img create -f qcow2 -b base.qcow2 -F qcow2`) and serves that. Both copy 64 KiB units (a thinp data block, a qcow2 cluster) on the first write to each; over the run later writes increasingly land in units already copied.",
    "- One run of each; numbers from a shared VM move by several per cent between runs.",
    "",
    renderResultsTable(context.measurements),
    "",
    "Ratios are thinp's number over the peer's: above 1, thinp is faster.",
  ].join("\n");
  process.stdout.write(`${report}\n`);
}

await main();
