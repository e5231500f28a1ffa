// CPU time a server process has used, from /proc/PID/stat: utime plus stime (fields 14 and
// 15). For a process these sum every thread, also threads that have exited since (qemu-nbd's
// worker threads come and go), so two readings bracket all the work the server did between
// them. Children's time is not in them; none of the servers forks one (nbdkit runs with
// --foreground, qemu-nbd without --fork, thinp is the node process itself).

import { execFileSync } from "node:child_process";
import { readFile } from "node:fs/promises";
import { assert } from "../../src/io/assert.js";

const UTIME_FIELD = 14;
const STIME_FIELD = 15;
/** Fields are numbered from 1; the first after the command name's closing parenthesis is 3. */
const FIRST_FIELD_AFTER_COMMAND = 3;

let clockTicksPerSecond: number | undefined;

/** sysconf(_SC_CLK_TCK), the unit of utime and stime; node has no sysconf, getconf asks it. */
function ticksPerSecond(): number {
  if (clockTicksPerSecond === undefined) {
    const ticks = Number(execFileSync("getconf", ["CLK_TCK"], { encoding: "utf8" }).trim());
    assert(Number.isInteger(ticks) && ticks > 0, `getconf CLK_TCK gives a positive integer, got ${ticks}`);
    clockTicksPerSecond = ticks;
  }
  return clockTicksPerSecond;
}

/** The resolution of processCpuSeconds: one clock tick. */
export function cpuTickSeconds(): number {
  return 1 / ticksPerSecond();
}

/** User plus system CPU seconds process `pid` has used so far. */
export async function processCpuSeconds(pid: number): Promise<number> {
  const stat = await readFile(`/proc/${pid}/stat`, "utf8");
  // The command name (field 2) is in parentheses and may itself hold spaces or parentheses.
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  const ticks = (field: number) => {
    const value = Number(fields[field - FIRST_FIELD_AFTER_COMMAND]);
    assert(Number.isInteger(value) && value >= 0, `/proc/${pid}/stat field ${field} is a tick count`);
    return value;
  };
  return (ticks(UTIME_FIELD) + ticks(STIME_FIELD)) / ticksPerSecond();
}
