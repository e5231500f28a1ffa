// What a 4 KiB write into the page cache costs, by how the file was first written. The kernel
// sizes a page-cache folio by the write that creates it, and a later small write into a large
// folio costs more (and dirties the whole folio): the reason the volume hands the data file
// no write longer than a data block (DIRECT_WRITE_BYTES_MAX in src/thin/volume.ts).
//
//   node dist/bench/page-cache-folios.js [--writes 50000]
//
// For each fill size: a 256 MiB file in the bench's scratch directory written in pieces of
// that size and synced, then random 4 KiB writes over it, timed; the file is deleted after.

import { closeSync, fdatasyncSync, openSync, unlinkSync, writeSync } from "node:fs";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { createBenchDir } from "./nbd/bench-dir.js";
import { rm } from "node:fs/promises";

const KiB = 1024;
const MiB = 1024 * KiB;
const FILE_BYTES = 256 * MiB;
const FILL_PIECES = [4 * KiB, 64 * KiB, 1 * MiB];

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { writes: { type: "string" } } });
  const writes = Number(values.writes ?? "50000");
  const dir = await createBenchDir();
  const rows: string[] = [];
  try {
    for (const piece of FILL_PIECES) {
      const path = join(dir, `fill-${piece}`);
      const fd = openSync(path, "w+");
      const fill = Buffer.alloc(piece, 1);
      for (let at = 0; at < FILE_BYTES; at += piece) writeSync(fd, fill, 0, piece, at);
      fdatasyncSync(fd);
      const small = Buffer.alloc(4 * KiB, 2);
      let seed = 20240601;
      const started = process.hrtime.bigint();
      for (let i = 0; i < writes; i++) {
        seed = (seed * 1103515245 + 12345) >>> 0;
        writeSync(fd, small, 0, small.length, (seed % (FILE_BYTES / small.length)) * small.length);
      }
      const micros = Number(process.hrtime.bigint() - started) / 1000 / writes;
      closeSync(fd);
      unlinkSync(path);
      rows.push(`| ${piece / KiB} KiB | ${micros.toFixed(1)} |`);
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
  const lines = [
    "## Page-cache folios: a 4 KiB write by how the file was first written",
    "",
    `Command: \`node dist/bench/page-cache-folios.js --writes ${writes}\`. A 256 MiB file in the bench's scratch dir, written in pieces of the size shown and synced, then ${writes.toLocaleString("en-US")} writes of 4 KiB at seeded random 4 KiB-aligned offsets with writeSync, timed.`,
    "",
    "| file first written in pieces of | us per 4 KiB write |",
    "|---|---:|",
    ...rows,
  ];
  process.stdout.write(`${lines.join("\n")}\n`);
}

await main();
