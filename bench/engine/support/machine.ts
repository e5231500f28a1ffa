// The machine a run was measured on, as the RESULTS file records it.

import { execFileSync } from "node:child_process";
import { availableParallelism, cpus, loadavg, release, tmpdir } from "node:os";

export interface MachineInfo {
  date: string;
  cpuCount: number;
  cpuModel: string;
  kernel: string;
  nodeVersion: string;
  memory: string;
  disk: string;
  /** 1, 5 and 15 minute load averages when the run started; the machine may be shared. */
  loadAtStart: number[];
}

export function describeMachine(): MachineInfo {
  return {
    date: new Date().toISOString(),
    cpuCount: availableParallelism(),
    cpuModel: cpus()[0]?.model ?? "unknown",
    kernel: release(),
    nodeVersion: process.version,
    memory: commandOutput("free", ["-g"]),
    disk: commandOutput("df", ["-h", tmpdir()]),
    loadAtStart: loadavg(),
  };
}

/** The end-of-run load is passed in: anything else running on the box shows up here. */
export function renderMachine(info: MachineInfo, loadAtEnd: number[]): string {
  return [
    `- date: ${info.date}`,
    `- load average (1/5/15 min): ${formatLoad(info.loadAtStart)} at start, ${formatLoad(loadAtEnd)} at end`,
    `- nproc: ${info.cpuCount} (${info.cpuModel}), Linux ${info.kernel}`,
    `- node: ${info.nodeVersion}`,
    "- `free -g`:",
    "",
    indentBlock(info.memory),
    "",
    "- `df -h` of the temp dir the pools live in:",
    "",
    indentBlock(info.disk),
  ].join("\n");
}

function formatLoad(load: number[]): string {
  return load.map((value) => value.toFixed(2)).join(" / ");
}

function indentBlock(text: string): string {
  return ["```", text.trimEnd(), "```"].join("\n");
}

function commandOutput(command: string, args: string[]): string {
  try {
    return execFileSync(command, args, { encoding: "utf8" });
  } catch (error) {
    return `(${command} failed: ${(error as Error).message})`;
  }
}
