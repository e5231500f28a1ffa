// Server CPU per request beside each row: the server process's user + system time over a
// measured run divided by the requests fio completed in it, median of the rounds.

import type { Measurements, MetricId } from "./measurements.js";
import { medianOf, renderTable, SERVER_LABELS, THINP } from "./report.js";

/** The goal for thinp: at most this much server CPU per 4 KiB request. */
export const CPU_GOAL_MICROS_PER_4K_REQUEST = 10;

interface CpuRow {
  metric: MetricId;
  workload: string;
  requests: string;
  /** Whether the requests are 4 KiB reads and writes, which the goal is stated for. */
  fourKiB: boolean;
}

export const CPU_ROWS: CpuRow[] = [
  { metric: "seqWrite", workload: "1. seq write 1 MiB QD8", requests: "1 MiB writes, 1 flush", fourKiB: false },
  { metric: "seqRead", workload: "1. seq read 1 MiB QD8", requests: "1 MiB reads", fourKiB: false },
  { metric: "randRead", workload: "2. rand read 4 KiB QD16", requests: "4 KiB reads", fourKiB: true },
  { metric: "randWrite", workload: "2. rand write 4 KiB QD16", requests: "4 KiB writes", fourKiB: true },
  { metric: "snapshotWrite", workload: "3. rand write 4 KiB QD16, fresh snapshot / overlay", requests: "4 KiB writes", fourKiB: true },
  { metric: "randReadConnections", workload: "4. rand read 4 KiB, 4 connections × QD8", requests: "4 KiB reads", fourKiB: true },
  { metric: "randWriteConnections", workload: "4. rand write 4 KiB, 4 connections × QD8", requests: "4 KiB writes", fourKiB: true },
  {
    metric: "flushEachWrite",
    workload: "5. rand write 4 KiB QD1, a flush after every write",
    requests: "4 KiB writes and as many flushes",
    fourKiB: false,
  },
  { metric: "commitReadAlone", workload: "6. rand read 4 KiB QD16, alone", requests: "4 KiB reads", fourKiB: true },
  {
    metric: "commitReadWithWriter",
    workload: "6. the same while a writer flushes every 100 ms",
    requests: "4 KiB reads; the writer's 4 KiB writes, a flush per 100",
    fourKiB: true,
  },
];

export function formatMicros(value: number): string {
  return value.toFixed(1);
}

/** µs per request, median of the rounds, for every server, and whether thinp's meets the goal. */
export function renderCpuTable(cpuPerRequest: Measurements): string {
  const goalHeader = `thinp: goal ≤ ${CPU_GOAL_MICROS_PER_4K_REQUEST} µs per 4 KiB request`;
  const headers = ["workload", "requests", ...SERVER_LABELS, goalHeader];
  const measured = CPU_ROWS.filter(({ metric }) => SERVER_LABELS.some((label) => cpuPerRequest.of(metric, label).length > 0));
  const rows = measured.map(({ metric, workload, requests, fourKiB }) => {
    const thinp = medianOf(cpuPerRequest, metric, THINP);
    let verdict = "—";
    if (thinp !== undefined) {
      verdict = fourKiB ? (thinp <= CPU_GOAL_MICROS_PER_4K_REQUEST ? "met" : "missed") : "not a 4 KiB row";
    }
    const cells = SERVER_LABELS.map((label) => {
      const value = medianOf(cpuPerRequest, metric, label);
      return value === undefined ? "—" : formatMicros(value);
    });
    return [workload, requests, ...cells, verdict];
  });
  return renderTable(headers, rows, (column) => column >= 2 && column < headers.length - 1);
}
