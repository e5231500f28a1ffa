// The results as markdown: the machine, how each workload ran, and one table of every
// server's numbers with thinp's ratio to each peer (above 1: thinp is faster). The server
// CPU table is in cpu-table.ts, the targets in targets.ts.

import { execFileSync } from "node:child_process";
import { availableParallelism, cpus, loadavg, release } from "node:os";
import { at } from "../../src/io/checked-index.js";
import { median, type Measurements, type MetricId } from "./measurements.js";

export const SERVER_LABELS = ["thinp", "qemu-nbd raw", "qemu-nbd qcow2", "nbdkit file"] as const;
export const THINP = SERVER_LABELS[0];
export const PEERS = SERVER_LABELS.slice(1);

interface Row {
  metric: MetricId;
  workload: string;
  unit: "MB/s" | "IOPS" | "%";
  /** Whether thinp's ratio to a peer means anything: not for a drop, nor for the writer's set rate. */
  ratios: boolean;
}

const ROWS: Row[] = [
  { metric: "seqWrite", workload: "1. seq write 1 MiB QD8, 512 MiB, new export", unit: "MB/s", ratios: true },
  { metric: "seqWriteFlushed", workload: "1. same, counting fio start-up and the final flush", unit: "MB/s", ratios: true },
  { metric: "seqRead", workload: "1. seq read 1 MiB QD8, the 512 MiB just written", unit: "MB/s", ratios: true },
  { metric: "randRead", workload: "2. rand read 4 KiB QD16, 512 MiB pre-written", unit: "IOPS", ratios: true },
  { metric: "randWrite", workload: "2. rand write 4 KiB QD16, same region", unit: "IOPS", ratios: true },
  {
    metric: "snapshotWrite",
    workload: "3. rand write 4 KiB QD16, fresh snapshot / qcow2 overlay of a full 1 GiB",
    unit: "IOPS",
    ratios: true,
  },
  { metric: "randReadConnections", workload: "4. rand read 4 KiB, 4 connections × QD8, same region as 2", unit: "IOPS", ratios: true },
  { metric: "randWriteConnections", workload: "4. rand write 4 KiB, 4 connections × QD8, same region", unit: "IOPS", ratios: true },
  { metric: "flushEachWrite", workload: "5. rand write 4 KiB QD1, a flush after every write, same region", unit: "IOPS", ratios: true },
  { metric: "commitReadAlone", workload: "6. rand read 4 KiB QD16, same region, alone", unit: "IOPS", ratios: true },
  { metric: "commitReadWithWriter", workload: "6. the same while a writer flushes every 100 ms", unit: "IOPS", ratios: true },
  { metric: "commitReadDrop", workload: "6. read IOPS lost to the writer (below 0: more with it)", unit: "%", ratios: false },
  { metric: "commitWriterWrite", workload: "6. the writer: rand write 4 KiB QD1, ≤ 1,000/s, other 512 MiB", unit: "IOPS", ratios: false },
];

/** The median of one metric and server; undefined if it was not measured. */
export function medianOf(measurements: Measurements, metric: MetricId, label: string): number | undefined {
  const samples = measurements.of(metric, label);
  return samples.length === 0 ? undefined : median(samples);
}

/** Only the rows something was measured for, so a run of some workloads shows only theirs. */
function measuredRows(measurements: Measurements): Row[] {
  return ROWS.filter(({ metric }) => SERVER_LABELS.some((label) => measurements.of(metric, label).length > 0));
}

/** Medians of every metric, with thinp's ratio to each peer. */
export function renderResultsTable(measurements: Measurements): string {
  const headers = ["workload", "unit", ...SERVER_LABELS, ...PEERS.map((peer) => `thinp ÷ ${peer}`)];
  const rows = measuredRows(measurements).map(({ metric, workload, unit, ratios }) => {
    const thinp = medianOf(measurements, metric, THINP);
    const ratioCells = PEERS.map((peer) => {
      const value = medianOf(measurements, metric, peer);
      return !ratios || thinp === undefined || value === undefined || value === 0 ? "—" : (thinp / value).toFixed(2);
    });
    return [workload, unit, ...SERVER_LABELS.map((label) => formatValue(medianOf(measurements, metric, label), unit)), ...ratioCells];
  });
  return renderTable(headers, rows, (column) => column >= 2);
}

/** Lowest and highest sample of every metric, to show how far a median can be trusted. */
export function renderSpreadTable(measurements: Measurements): string {
  const headers = ["workload", "unit", ...SERVER_LABELS];
  const rows = measuredRows(measurements).map(({ metric, workload, unit }) => [
    workload,
    unit,
    ...SERVER_LABELS.map((label) => {
      const samples = measurements.of(metric, label);
      if (samples.length === 0) return "—";
      const [lowest, highest] = [formatValue(Math.min(...samples), unit), formatValue(Math.max(...samples), unit)];
      // A dash between two numbers that can be negative reads as a minus sign.
      return unit === "%" ? `${lowest} to ${highest}` : `${lowest}–${highest}`;
    }),
  ]);
  return renderTable(headers, rows, (column) => column >= 2);
}

function formatValue(value: number | undefined, unit: Row["unit"]): string {
  if (value === undefined) return "—";
  return unit === "%" ? value.toFixed(1) : Math.round(value).toLocaleString("en-US");
}

export function renderTable(headers: string[], rows: string[][], numeric: (column: number) => boolean): string {
  const widths = headers.map((header, column) =>
    Math.max(header.length, 3, ...rows.map((row) => at(row, column, "every row has a cell per header").length)),
  );
  const line = (cells: string[]) =>
    `| ${cells
      .map((cell, column) => {
        const width = widths[column] ?? 0;
        /* a cell past the headers is not padded */ return numeric(column) ? cell.padStart(width) : cell.padEnd(width);
      })
      .join(" | ")} |`;
  const rule = `|${widths.map((width, column) => (numeric(column) ? `${"-".repeat(width + 1)}:` : "-".repeat(width + 2))).join("|")}|`;
  return [line(headers), rule, ...rows.map(line)].join("\n");
}

/** The 1, 5 and 15 minute load averages: other work on the machine moves every number. */
export function loadAverages(): string {
  return loadavg()
    .map((load) => load.toFixed(2))
    .join(" ");
}

/** The commit measured, and whether src/ had uncommitted changes (others edit it concurrently). */
function measuredCommit(): string {
  const commit = commandOutput("git", ["rev-parse", "--short", "HEAD"]).trim();
  const changed = commandOutput("git", ["status", "--porcelain", "--", "src"]).trim();
  return changed === "" ? commit : `${commit} with uncommitted changes in src/`;
}

export function renderMachine(benchDir: string, date: Date): string {
  return [
    `- date: ${date.toISOString()}; thinp at ${measuredCommit()}`,
    `- nproc: ${availableParallelism()} (${cpus()[0]?.model ?? "unknown CPU"}), Linux ${release()}`,
    `- node ${process.version}; ${firstLine("fio", ["--version"])}; ${firstLine("qemu-nbd", ["--version"])}; ${firstLine("nbdkit", ["--version"])}`,
    "- `free -g`:",
    "",
    fenced(commandOutput("free", ["-g"])),
    "",
    `- \`df -hT\` of the bench dir (${benchDir}):`,
    "",
    fenced(commandOutput("df", ["-hT", benchDir])),
  ].join("\n");
}

function fenced(text: string): string {
  return ["```", text.trimEnd(), "```"].join("\n");
}

function firstLine(command: string, args: string[]): string {
  // split gives at least one string.
  return (commandOutput(command, args).split("\n")[0] ?? "").trim();
}

function commandOutput(command: string, args: string[]): string {
  try {
    return execFileSync(command, args, { encoding: "utf8" });
  } catch (error) {
    return `(${command} failed: ${(error as Error).message})`;
  }
}
