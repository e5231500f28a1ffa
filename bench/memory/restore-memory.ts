// What `thinp restore` costs in memory and time on a large dm-thin pool: a thin_dump XML of
// 10^6 mappings (four devices; the first's blocks shared by a snapshot, one mapping in four
// changed there), over a sparse data file of 2^21 blocks. The restore runs in a child
// process, `thinp restore` itself, whose peak RSS (VmHWM) is read from /proc as it exits.
// The goal: under 256 MiB, however many mappings. Prints one markdown section; exits 1 if
// the peak passed it.
//
//   node dist/bench/memory/restore-memory.js [--mappings 1000000]

import { spawn } from "node:child_process";
import { createWriteStream } from "node:fs";
import { mkdtemp, readFile, rm, stat, truncate, writeFile } from "node:fs/promises";
import { loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { once } from "node:events";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";

const RSS_GOAL_BYTES = 256 * 2 ** 20;
const DATA_BLOCKS = 2 ** 21;
const CLI = fileURLToPath(new URL("../../cli/main.js", import.meta.url));

async function writeDump(path: string, mappings: number): Promise<void> {
  const out = createWriteStream(path);
  const write = async (text: string) => {
    if (!out.write(text)) await once(out, "drain");
  };
  await write(
    `<superblock uuid="" time="1" transaction="2" flags="0" version="2" data_block_size="128" nr_data_blocks="${DATA_BLOCKS}">\n`,
  );
  // Device 1: every other data block, so no two mappings make a range; device 2 is its
  // snapshot with one block in four remapped; devices 3 and 4 take what is left.
  const origin = Math.floor(mappings * 0.4);
  const snapshot = Math.floor(mappings * 0.4);
  const rest = mappings - origin - snapshot;
  await write(`  <device dev_id="1" mapped_blocks="${origin}" transaction="0" creation_time="0" snap_time="1">\n`);
  for (let v = 0; v < origin; v++) await write(`    <single_mapping origin_block="${v}" data_block="${2 * v}" time="0"/>\n`);
  await write(`  </device>\n  <device dev_id="2" mapped_blocks="${snapshot}" transaction="0" creation_time="1" snap_time="1">\n`);
  for (let v = 0; v < snapshot; v++) {
    const data = v % 4 === 3 ? 2 * v + 1 : 2 * v;
    await write(`    <single_mapping origin_block="${v}" data_block="${data}" time="${v % 4 === 3 ? 1 : 0}"/>\n`);
  }
  await write(`  </device>\n`);
  const base = 2 * origin + 2;
  for (const [devId, count, first] of [
    [3, Math.floor(rest / 2), base],
    [4, rest - Math.floor(rest / 2), base + 2 * Math.floor(rest / 2)],
  ] as const) {
    await write(`  <device dev_id="${devId}" mapped_blocks="${count}" transaction="0" creation_time="1" snap_time="1">\n`);
    for (let v = 0; v < count; v++) await write(`    <single_mapping origin_block="${v}" data_block="${first + 2 * v}" time="1"/>\n`);
    await write(`  </device>\n`);
  }
  await write(`</superblock>\n`);
  out.end();
  await once(out, "finish");
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { mappings: { type: "string", default: "1000000" } } });
  const mappings = Number(values.mappings);
  const dir = await mkdtemp(join(tmpdir(), "thinp-restore-bench-"));
  try {
    const xml = join(dir, "pool.xml");
    const data = join(dir, "data.img");
    await writeDump(xml, mappings);
    await writeFile(data, "");
    await truncate(data, DATA_BLOCKS * 65536);
    const started = performance.now();
    const child = spawn(process.execPath, [CLI, "restore", xml, data, join(dir, "meta.img")], { stdio: ["ignore", "pipe", "inherit"] });
    let peakKiB = 0;
    // VmHWM is the peak; read it while the child lives, last just before it exits.
    const sample = setInterval(() => {
      void readFile(`/proc/${child.pid}/status`, "utf8")
        .then((status) => {
          const hwm = /VmHWM:\s+(\d+) kB/.exec(status);
          if (hwm) peakKiB = Math.max(peakKiB, Number(hwm[1]));
        })
        .catch(() => undefined);
    }, 100);
    let output = "";
    child.stdout.on("data", (chunk: Buffer) => (output += chunk.toString()));
    const [code] = (await once(child, "exit")) as [number | null];
    clearInterval(sample);
    const seconds = (performance.now() - started) / 1000;
    if (code !== 0) throw new Error(`thinp restore exited ${code}`);
    const xmlBytes = (await stat(xml)).size;
    const peak = peakKiB * 1024;
    const pass = peak < RSS_GOAL_BYTES;
    process.stdout.write(
      [
        `## Restore from thin_dump XML (bench/memory/restore-memory.ts)`,
        ``,
        `Command: \`node dist/bench/memory/restore-memory.js --mappings ${mappings}\`; load average ${loadavg()
          .map((x) => x.toFixed(2))
          .join(" / ")} at the end.`,
        ``,
        `| mappings | XML | seconds | mappings per second | peak RSS (VmHWM, sampled every 100 ms) |`,
        `|---:|---:|---:|---:|---:|`,
        `| ${mappings.toLocaleString("en-US")} | ${(xmlBytes / 2 ** 20).toFixed(1)} MiB | ${seconds.toFixed(1)} | ${Math.round(mappings / seconds).toLocaleString("en-US")} | ${(peak / 2 ** 20).toFixed(1)} MiB |`,
        ``,
        `- ${pass ? "PASS" : "FAIL"}: peak RSS ${(peak / 2 ** 20).toFixed(1)} MiB, goal under ${RSS_GOAL_BYTES / 2 ** 20} MiB.`,
        ``,
        "```",
        output.trim().split("\n").slice(0, 6).join("\n"),
        "```",
        ``,
      ].join("\n"),
    );
    if (!pass) process.exitCode = 1;
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

await main();
