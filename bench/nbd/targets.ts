// The target for each row and whether thinp's median meets it. A ratio target is
// against the best median among the named peers in this run; a row not run has no line.

import { CPU_GOAL_MICROS_PER_4K_REQUEST, CPU_ROWS, formatMicros } from "./cpu-table.js";
import type { Measurements, MetricId } from "./measurements.js";
import { medianOf, PEERS, renderTable, THINP } from "./report.js";

/** Workload 6's goal: the reads lose at most this share of their IOPS to the writer. */
const COMMIT_READ_DROP_MAX_PERCENT = 10;

interface TargetLine {
  row: string;
  target: string;
  thinp: string;
  verdict: "met" | "missed" | "reported";
}

const QEMU_NBD = ["qemu-nbd raw", "qemu-nbd qcow2"];

/** thinp's median over the best median among `peers`; `threshold` false reports it without a verdict. */
function againstBest(
  measurements: Measurements,
  row: string,
  metric: MetricId,
  peers: readonly string[],
  target: string,
  threshold = true,
): TargetLine | undefined {
  const thinp = medianOf(measurements, metric, THINP);
  let best: { label: string; value: number } | undefined;
  for (const label of peers) {
    const value = medianOf(measurements, metric, label);
    if (value !== undefined && value > 0 && (best === undefined || value > best.value)) best = { label, value };
  }
  if (thinp === undefined || best === undefined) return undefined;
  const ratio = thinp / best.value;
  const verdict = !threshold ? "reported" : ratio >= 1 ? "met" : "missed";
  // With several peers named, the line says which one was best.
  const named = peers.length > 1 ? `${target} (${best.label})` : target;
  return { row, target: named, thinp: `${ratio.toFixed(2)}x`, verdict };
}

function commitReadDrop(measurements: Measurements): TargetLine | undefined {
  const drop = medianOf(measurements, "commitReadDrop", THINP);
  if (drop === undefined) return undefined;
  return {
    row: "6. reads while commits run",
    target: `read IOPS drop ≤ ${COMMIT_READ_DROP_MAX_PERCENT}% against the same job alone`,
    thinp: `${drop.toFixed(1)}%`,
    verdict: drop <= COMMIT_READ_DROP_MAX_PERCENT ? "met" : "missed",
  };
}

/** The goal holds only if it holds on every 4 KiB row, so the line names the worst. */
function cpuPerRequest(cpu: Measurements): TargetLine | undefined {
  let worst: { workload: string; value: number } | undefined;
  for (const { metric, workload, fourKiB } of CPU_ROWS) {
    const value = medianOf(cpu, metric, THINP);
    if (fourKiB && value !== undefined && (worst === undefined || value > worst.value)) worst = { workload, value };
  }
  if (worst === undefined) return undefined;
  return {
    row: "server CPU, every 4 KiB row",
    target: `≤ ${CPU_GOAL_MICROS_PER_4K_REQUEST} µs per request (worst: ${worst.workload})`,
    thinp: `${formatMicros(worst.value)} µs`,
    verdict: worst.value <= CPU_GOAL_MICROS_PER_4K_REQUEST ? "met" : "missed",
  };
}

export function renderTargetsTable(measurements: Measurements, cpu: Measurements): string {
  const bestPeer = "≥ 1.0x the best peer";
  const lines = [
    againstBest(measurements, "2. rand read 4 KiB QD16", "randRead", PEERS, bestPeer),
    againstBest(measurements, "2. rand write 4 KiB QD16", "randWrite", PEERS, bestPeer),
    againstBest(measurements, "1. seq write 1 MiB QD8", "seqWrite", PEERS, bestPeer),
    againstBest(measurements, "1. seq read 1 MiB QD8", "seqRead", PEERS, bestPeer),
    againstBest(
      measurements,
      "3. rand write 4 KiB to a fresh snapshot",
      "snapshotWrite",
      ["qemu-nbd qcow2"],
      "≥ 1.0x a fresh qcow2 overlay",
    ),
    againstBest(
      measurements,
      "4. rand read 4 KiB, 4 connections",
      "randReadConnections",
      QEMU_NBD,
      "≥ 1.0x qemu-nbd, the better of raw and qcow2",
    ),
    againstBest(
      measurements,
      "4. rand read 4 KiB, 4 connections",
      "randReadConnections",
      ["nbdkit file"],
      "as close to nbdkit file as the cores allow",
      false,
    ),
    againstBest(measurements, "4. rand write 4 KiB, 4 connections", "randWriteConnections", PEERS, bestPeer),
    againstBest(measurements, "5. rand write 4 KiB QD1, flush after each", "flushEachWrite", ["qemu-nbd qcow2"], "≥ 1.0x qemu-nbd qcow2"),
    againstBest(
      measurements,
      "5. rand write 4 KiB QD1, flush after each",
      "flushEachWrite",
      ["qemu-nbd raw"],
      "ratio to qemu-nbd raw, no threshold",
      false,
    ),
    commitReadDrop(measurements),
    cpuPerRequest(cpu),
  ].filter((line) => line !== undefined);
  const headers = ["row", "target", "thinp", "verdict"];
  return renderTable(
    headers,
    lines.map(({ row, target, thinp, verdict }) => [row, target, thinp, verdict]),
    (column) => column === 2,
  );
}
