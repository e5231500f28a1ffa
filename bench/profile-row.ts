// Where the server's time goes on one row of `npm run bench:nbd`: runs that row's fio job
// against the bench's thinp server under V8's CPU profiler and prints the profile's samples
// by where they fall: thinp's own code (by layer), the system calls Node and the FFI make,
// the garbage collector, Node's and V8's internals, and idle. A row that misses its target
// is kept beside this, to show what the rest of its time is.
//
//   node dist/bench/profile-row.js --row randread|randwrite|randread4|randwrite4|fsync|seqwrite|seqread|snapshot
//     [--seconds 8] [--keep DIR]   (DIR, empty, keeps the .cpuprofile files)
//
// The export is prepared as the bench prepares it (the first 512 MiB written sequentially
// and flushed, or for `snapshot` all 1 GiB and then a snapshot taken) by a server that is
// then stopped, so the profile holds only the measured job and the server's start.

import { mkdir, readdir, readFile, rm } from "node:fs/promises";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { createBenchDir } from "./nbd/bench-dir.js";
import { EXPORT_NAME, serveThinp, THINP_POOL_BYTES } from "./nbd/contenders.js";
import { runFio, type FioJob } from "./nbd/fio.js";
import { killAllServers } from "./nbd/server-process.js";

const KiB = 1024;
const MiB = 1024 * KiB;
const GiB = 1024 * MiB;
const VOLUME_BYTES = 1 * GiB;
const PREWRITTEN_BYTES = 512 * MiB;
const SNAPSHOT_NAME = "snap";

type Row = "randread" | "randwrite" | "randread4" | "randwrite4" | "fsync" | "seqwrite" | "seqread" | "snapshot";
const ROWS: readonly Row[] = ["randread", "randwrite", "randread4", "randwrite4", "fsync", "seqwrite", "seqread", "snapshot"];

/** The row's measured job, as bench/nbd/pre-written-workloads.ts and workloads.ts shape it. */
function measuredJob(row: Row, uri: string, seconds: number): FioJob {
  const random = { uri, blockBytes: 4 * KiB, regionBytes: PREWRITTEN_BYTES, runtimeSeconds: seconds };
  switch (row) {
    case "randread":
      return { ...random, name: row, rw: "randread", iodepth: 16 };
    case "randwrite":
      return { ...random, name: row, rw: "randwrite", iodepth: 16 };
    case "randread4":
      return { ...random, name: row, rw: "randread", iodepth: 8, connections: 4 };
    case "randwrite4":
      return { ...random, name: row, rw: "randwrite", iodepth: 8, connections: 4 };
    case "fsync":
      return { ...random, name: row, rw: "randwrite", iodepth: 1, flushEveryWrites: 1 };
    case "snapshot":
      return { ...random, name: row, rw: "randwrite", iodepth: 16, regionBytes: VOLUME_BYTES };
    case "seqwrite":
      return { name: row, uri, rw: "write", blockBytes: MiB, regionBytes: PREWRITTEN_BYTES, iodepth: 8, endFlush: true };
    case "seqread":
      return { name: row, uri, rw: "read", blockBytes: MiB, regionBytes: PREWRITTEN_BYTES, iodepth: 8 };
  }
}

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string };
}
interface CpuProfile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
}

/** Which part of the process a sample's innermost frame belongs to. */
function categoryOf(frame: ProfileNode["callFrame"]): string {
  const { functionName, url } = frame;
  if (functionName === "(idle)") return "idle (waiting for the client, the disk or the thread pool)";
  if (functionName === "(garbage collector)") return "V8: garbage collector";
  if (functionName === "(program)") return "V8: compiler, runtime and native code outside JavaScript";
  // The FFI's calls into the C library are the system call they make.
  if (url.endsWith("/src/io/libc.js")) return `system call through the FFI: ${functionName}`;
  const layer = /\/dist\/src\/(\w+)\//.exec(url);
  if (layer) return `thinp's own code: src/${layer[1]}`;
  if (url === "") return `Node.js native binding (a system call): ${functionName || "(anonymous)"}`;
  if (url.startsWith("node:")) return "Node.js's JavaScript internals (streams, buffers, promises, fs)";
  if (url.includes("/node_modules/")) return "libraries";
  return "other JavaScript";
}

async function shares(profileDir: string): Promise<Map<string, number>> {
  const totals = new Map<string, number>();
  for (const file of await readdir(profileDir)) {
    if (!file.endsWith(".cpuprofile")) continue;
    const profile = JSON.parse(await readFile(join(profileDir, file), "utf8")) as CpuProfile;
    const byId = new Map(profile.nodes.map((node) => [node.id, node]));
    profile.samples.forEach((id, index) => {
      const node = byId.get(id);
      if (node === undefined) return;
      const category = categoryOf(node.callFrame);
      totals.set(category, (totals.get(category) ?? 0) + (profile.timeDeltas[index] ?? 0));
    });
  }
  return totals;
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { row: { type: "string" }, seconds: { type: "string" }, keep: { type: "string" } } });
  const row = values.row as Row | undefined;
  if (row === undefined || !ROWS.includes(row)) throw new Error(`--row takes one of ${ROWS.join(", ")}`);
  const seconds = Number(values.seconds ?? "8");
  const dir = await createBenchDir();
  const profileDir = values.keep ?? join(dir, "profiles");
  await mkdir(profileDir, { recursive: true });
  try {
    const poolDir = join(dir, "pool");
    await mkdir(poolDir);
    const fresh = { createPoolBytes: THINP_POOL_BYTES, volumes: [{ name: EXPORT_NAME, sizeBytes: VOLUME_BYTES }], snapshots: [] };
    const preparing = await serveThinp(poolDir, fresh, {});
    if (row !== "seqwrite") {
      const fillBytes = row === "snapshot" ? VOLUME_BYTES : PREWRITTEN_BYTES;
      const fill: FioJob = {
        name: "fill",
        uri: preparing.uri,
        rw: "write",
        blockBytes: MiB,
        regionBytes: fillBytes,
        iodepth: 8,
        endFlush: true,
      };
      await runFio(fill, join(dir, "fill.json"));
    }
    await preparing.stop();
    const snapshots = row === "snapshot" ? [{ origin: EXPORT_NAME, name: SNAPSHOT_NAME }] : [];
    const measured = await serveThinp(
      poolDir,
      { volumes: [], snapshots },
      { cpuProfileDir: profileDir },
      row === "snapshot" ? SNAPSHOT_NAME : EXPORT_NAME,
    );
    const result = await runFio(measuredJob(row, measured.uri, seconds), join(dir, "measured.json"));
    await measured.stop();
    const totals = await shares(profileDir);
    const all = [...totals.values()].reduce((sum, value) => sum + value, 0);
    const lines = [
      `Row \`${row}\`: ${Math.round(result.iops).toLocaleString("en-US")} IOPS, ${(result.bytesPerSecond / 1e6).toFixed(0)} MB/s; the server's CPU profile (${(all / 1e6).toFixed(1)} s of samples):`,
      "",
      "| where the server's time went | share |",
      "|---|---:|",
      ...[...totals]
        .sort((a, b) => b[1] - a[1])
        .filter(([, micros]) => micros / all >= 0.005)
        .map(([category, micros]) => `| ${category} | ${((100 * micros) / all).toFixed(1)} % |`),
    ];
    process.stdout.write(`${lines.join("\n")}\n`);
  } finally {
    killAllServers();
    await rm(dir, { recursive: true, force: true });
  }
}

await main();
