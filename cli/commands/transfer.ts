// Commands that move bytes between a volume and a raw image: import, export. The image
// may be a file, a block device, or `-` for stdin and stdout (cli/import-source.ts,
// cli/export-target.ts). Both stop cleanly on SIGINT or SIGTERM (cli/interruption.ts).

import type { Command } from "commander";
import { stat } from "node:fs/promises";
import type { ControlServer } from "../../src/control/control-server.js";
import { ThinpError, type ErrorCode } from "../../src/errors.js";
import { assert } from "../../src/io/assert.js";
import type { VolumeHandle } from "../../src/thin/api.js";
import { Pool } from "../../src/thin/pool.js";
import { openExportTarget, planExportTarget, type ExportTarget, type ExportTargetPlan } from "../export-target.js";
import { recogniseImageFormat, type ImageFormat } from "../image-formats.js";
import { answerDuringImport } from "../import-control.js";
import { openImportSource, type ImportSource } from "../import-source.js";
import { runInterruptible, type Interruption } from "../interruption.js";
import { exportUri, shellQuote } from "../nbd-attach.js";
import { addPoolOption, type PoolOptions } from "../options.js";
import { refuseWhileServed, resolvePoolPath, withPool } from "../pool-session.js";
import { startProgress } from "../progress.js";
import { formatSize, parseSize } from "../size.js";
import { zeroBlockRuns } from "../zero-runs.js";

/** Bytes read from the source or the volume per step: large enough to stream well, small enough to bound memory. */
const TRANSFER_CHUNK_BYTES = 4 * 1024 * 1024;
/** Bytes of volume whose extents are asked for at once, so a fragmented volume's extent list stays bounded. */
const EXTENT_WINDOW_BYTES = 1024 * 1024 * 1024;

interface ImportOptions extends PoolOptions {
  offset: string;
  raw?: boolean;
}

interface ExportOptions extends PoolOptions {
  force?: boolean;
}

export function registerTransferCommands(program: Command): void {
  addPoolOption(
    program
      .command("import")
      .description("write a raw image into a volume; whole blocks of zeros are discarded rather than written")
      .argument("<name>", "volume to write")
      .argument("<file>", "raw image file, block device, or - for stdin")
      .option("--offset <bytes>", "byte offset in the volume to write at (suffixes K, M, G, T allowed)", "0")
      .option("--raw", "take the bytes as they are, even if they look like a qcow2, VMDK, VDI, VHD, VHDX or QED image"),
  ).action(importImage);

  addPoolOption(
    program
      .command("export")
      .description("write a volume to a sparse raw image: unmapped and all-zero blocks stay holes")
      .argument("<name>", "volume to read")
      .argument("<file>", "image file to create, block device to overwrite, or - for stdout")
      .option("--force", "replace the file, or overwrite the block device, if it exists"),
  ).action(exportVolume);
}

// ---- import ------------------------------------------------------------------------------

/** The source would run past the end of the volume; nothing has been committed. */
class ImportTooLargeError extends ThinpError {
  readonly code: ErrorCode = "OUT_OF_RANGE";
  /** `sourceBytes`: the source's whole length, or for a stream, a length it is known to exceed. */
  constructor(source: ImportSource, sourceBytes: number, offset: number, volume: VolumeHandle) {
    const length = source.byteLength === null ? `more than ${sourceBytes} bytes` : `${sourceBytes} bytes, ${formatSize(sourceBytes)}`;
    const needs = source.byteLength === null ? `more than ${offset + sourceBytes}` : `${offset + sourceBytes}`;
    super(
      `${source.name} (${length}) does not fit in '${volume.name}' at offset ${offset}: ` +
        `it needs ${needs} bytes and the volume has ${volume.sizeBytes} (${formatSize(volume.sizeBytes)}); ` +
        `grow it with 'thinp resize ${volume.name} --size SIZE'`,
    );
  }
}

/** An offset past the end leaves no room at all, whatever the source holds. */
class OffsetPastEndError extends ThinpError {
  readonly code: ErrorCode = "OUT_OF_RANGE";
  constructor(offset: number, volume: VolumeHandle) {
    super(`offset ${offset} is past the end of '${volume.name}' (${volume.sizeBytes} bytes, ${formatSize(volume.sizeBytes)})`);
  }
}

/** The source is a disk image in a container format; its bytes are not the disk's. */
class ContainerImageError extends ThinpError {
  // The same status as the other sources import refuses (a directory, a socket).
  readonly code: ErrorCode = "IO_ERROR";
  constructor(source: ImportSource, format: ImageFormat, retryArgs: (rawPath: string) => string) {
    const named = source.name !== "stdin";
    const input = named ? shellQuote(source.name) : "FILE";
    const converted = named ? shellQuote(`${source.name}.raw`) : "FILE.raw";
    const formatOption = format.qemuFormatOption === null ? "" : `-f ${format.qemuFormatOption} `;
    super(
      `${source.name} is a ${format.name} image, not raw bytes; convert it first: ` +
        `qemu-img convert ${formatOption}-O raw ${input} ${converted} && ${retryArgs(converted)} ` +
        `(or add --raw if it really is the disk's bytes)`,
    );
  }
}

interface ImportTally {
  writtenBytes: number;
  discardedBytes: number;
}

async function importImage(volumeName: string, sourcePath: string, options: ImportOptions): Promise<void> {
  const offset = parseSize(options.offset);
  const metaPath = resolvePoolPath(options.pool);
  // nbdcopy writes from the start of the export; at another offset there is no one-line way round.
  await refuseWhileServed(metaPath, (nbd) =>
    nbd && offset === 0 ? `copy with nbdcopy ${shellQuote(sourcePath)} ${shellQuote(exportUri(nbd, volumeName))}` : "",
  );
  const retryArgs = (rawPath: string) =>
    [
      "thinp import",
      shellQuote(volumeName),
      rawPath,
      ...(offset === 0 ? [] : ["--offset", shellQuote(options.offset)]),
      ...(options.pool === undefined ? [] : ["--pool", shellQuote(options.pool)]),
    ].join(" ");
  let sourceName = sourcePath;
  const tally = await runInterruptible(
    "import",
    async (interruption) => {
      const source = await openImportSource(sourcePath, interruption);
      sourceName = source.name;
      try {
        const refuseContainer = (format: ImageFormat | null) => {
          if (format !== null && options.raw !== true) throw new ContainerImageError(source, format, retryArgs);
        };
        refuseContainer(source.format);
        return await withImportSession(metaPath, volumeName, interruption, async (pool) => {
          const volume = await pool.volume(volumeName);
          if (offset > volume.sizeBytes) throw new OffsetPastEndError(offset, volume);
          if (source.byteLength !== null && offset + source.byteLength > volume.sizeBytes) {
            throw new ImportTooLargeError(source, source.byteLength, offset, volume);
          }
          return copySourceIntoVolume(source, volume, offset, pool.status().dataBlockBytes, interruption, refuseContainer);
        });
      } finally {
        await source.close();
      }
    },
    () => `nothing was committed, '${volumeName}' is as it was`,
  );
  process.stdout.write(
    `imported ${formatSize(tally.writtenBytes + tally.discardedBytes)} from ${sourceName} into ${volumeName} at offset ${offset}` +
      ` (${formatSize(tally.writtenBytes)} written, ${formatSize(tally.discardedBytes)} of zero blocks discarded)\n`,
  );
}

/**
 * withPool's open, work, commit, close, with the pool's control socket answered meanwhile
 * (cli/import-control.ts). The socket goes before the pool closes, whatever the outcome,
 * so nothing is left answering for a pool this process no longer holds.
 */
async function withImportSession<T>(
  metaPath: string,
  volumeName: string,
  interruption: Interruption,
  work: (pool: Pool) => Promise<T>,
): Promise<T> {
  const pool = await Pool.open(metaPath, { readOnly: false });
  let control: ControlServer | null = null;
  let result: T;
  try {
    control = await answerDuringImport(pool, metaPath, volumeName);
    result = await work(pool);
    // Past this point the import is committed and reported whatever signal comes.
    interruption.disarm();
    await pool.commit();
  } catch (failure) {
    // Close without committing; the first error is the one the user needs.
    await control?.close().catch(() => undefined);
    await pool.close().catch(() => undefined);
    throw failure;
  }
  await control?.close();
  await pool.close();
  return result;
}

async function copySourceIntoVolume(
  source: ImportSource,
  volume: VolumeHandle,
  offset: number,
  blockBytes: number,
  interruption: Interruption,
  refuseContainer: (format: ImageFormat | null) => void,
): Promise<ImportTally> {
  // Keeps every chunk after the first block-aligned, so zero blocks are seen whole.
  assert(TRANSFER_CHUNK_BYTES % blockBytes === 0, `transfer chunk ${TRANSFER_CHUNK_BYTES} for blocks of ${blockBytes}`);
  const tally: ImportTally = { writtenBytes: 0, discardedBytes: 0 };
  const progress = startProgress(`import ${volume.name}`, source.byteLength);
  try {
    const buffer = Buffer.alloc(TRANSFER_CHUNK_BYTES);
    let sourceOffset = 0;
    for (;;) {
      interruption.check();
      const volumeOffset = offset + sourceOffset;
      const roomBytes = volume.sizeBytes - volumeOffset;
      // The first chunk stops at a block boundary, so every later chunk starts on one. At most
      // one byte past the room left is read, so a stream too long for the volume is refused
      // the moment it shows, not after it has all been read.
      const wantedBytes = Math.min(TRANSFER_CHUNK_BYTES - (volumeOffset % blockBytes), roomBytes + 1);
      const filled = await source.readNext(buffer.subarray(0, wantedBytes), interruption);
      if (filled === 0) break;
      const chunk = buffer.subarray(0, filled);
      // A file's format was checked when it was opened; a stream shows it only now.
      if (sourceOffset === 0 && source.isStream) refuseContainer(recogniseImageFormat(chunk, null));
      if (filled > roomBytes) throw new ImportTooLargeError(source, sourceOffset + roomBytes, offset, volume);
      for (const run of zeroBlockRuns(volumeOffset, chunk, blockBytes)) {
        if (run.zero) {
          await volume.discard(volumeOffset + run.start, run.byteLength);
          tally.discardedBytes += run.byteLength;
        } else {
          await volume.write(volumeOffset + run.start, chunk.subarray(run.start, run.start + run.byteLength));
          tally.writtenBytes += run.byteLength;
        }
      }
      sourceOffset += filled;
      progress.advance(filled);
      if (filled < wantedBytes) break;
    }
  } finally {
    progress.stop();
  }
  return tally;
}

// ---- export ------------------------------------------------------------------------------

/** `--force` onto one of the pool's own files would replace it with the export, and lose the pool. */
class TargetIsPoolFileError extends ThinpError {
  readonly code: ErrorCode = "FILE_EXISTS";
  constructor(targetPath: string, which: string) {
    super(`${targetPath} is this pool's ${which}; exporting onto it would destroy the pool`);
  }
}

async function refuseOwnPoolFile(plan: ExportTargetPlan, pool: Pool): Promise<void> {
  if (plan.kind !== "file" || plan.replacing === null) return;
  for (const [which, filePath] of [
    ["data file", pool.dataPath],
    ["metadata file", pool.metaPath],
  ] as const) {
    const stats = await stat(filePath).catch(() => null);
    if (stats && stats.dev === plan.replacing.dev && stats.ino === plan.replacing.ino) throw new TargetIsPoolFileError(plan.name, which);
  }
}

async function exportVolume(volumeName: string, targetPath: string, options: ExportOptions): Promise<void> {
  const metaPath = resolvePoolPath(options.pool);
  await refuseWhileServed(metaPath, (nbd) =>
    nbd ? `copy with nbdcopy ${shellQuote(exportUri(nbd, volumeName))} ${shellQuote(targetPath)}` : "",
  );
  const plan = await planExportTarget(targetPath, options.force === true, volumeName);
  let leftBehind = "nothing was written";
  const summary = await runInterruptible(
    "export",
    (interruption) =>
      withPool(metaPath, "read", async (pool) => {
        await refuseOwnPoolFile(plan, pool);
        const volume = await pool.volume(volumeName);
        const target = await openExportTarget(plan, volume.name, volume.sizeBytes, interruption);
        try {
          const dataBytes = await copyVolumeIntoTarget(volume, target, pool.status().dataBlockBytes, interruption);
          await target.flush();
          // From here the copy is whole: the rename goes ahead whatever signal comes.
          interruption.disarm();
          await target.place();
          return target.summarize(volume.name, volume.sizeBytes, dataBytes);
        } catch (failure) {
          // A half-written image would look like a good one; leave nothing behind that can be removed.
          leftBehind = await target.abandon();
          throw failure;
        }
      }),
    () => leftBehind,
  );
  // With the image on stdout, nothing else may go there.
  const toStdout = plan.kind === "stream" && plan.path === null;
  (toStdout ? process.stderr : process.stdout).write(`${summary}\n`);
}

/** Returns the bytes of data copied: those not in holes or whole zero blocks. */
async function copyVolumeIntoTarget(
  volume: VolumeHandle,
  target: ExportTarget,
  blockBytes: number,
  interruption: Interruption,
): Promise<number> {
  const progress = startProgress(`export ${volume.name}`, volume.sizeBytes);
  let dataBytes = 0;
  // A target that does not read as zeros where unwritten (a device, a stream) gets the holes written out.
  const zeros = target.holesReadAsZero ? null : Buffer.alloc(TRANSFER_CHUNK_BYTES);
  try {
    for (let windowStart = 0; windowStart < volume.sizeBytes; windowStart += EXTENT_WINDOW_BYTES) {
      const windowBytes = Math.min(EXTENT_WINDOW_BYTES, volume.sizeBytes - windowStart);
      for (const extent of await volume.extents(windowStart, windowBytes)) {
        const extentEnd = extent.offset + extent.length;
        for (let chunkStart = extent.offset; chunkStart < extentEnd; chunkStart += TRANSFER_CHUNK_BYTES) {
          interruption.check();
          const chunkBytes = Math.min(TRANSFER_CHUNK_BYTES, extentEnd - chunkStart);
          if (!extent.mapped) {
            if (zeros === null) break;
            await target.write(zeros.subarray(0, chunkBytes), chunkStart, interruption);
            progress.advance(chunkBytes);
            continue;
          }
          const chunk = await volume.read(chunkStart, chunkBytes);
          for (const run of zeroBlockRuns(chunkStart, chunk, blockBytes)) {
            if (run.zero) continue;
            dataBytes += run.byteLength;
            if (target.holesReadAsZero) {
              await target.write(chunk.subarray(run.start, run.start + run.byteLength), chunkStart + run.start, interruption);
            }
          }
          if (!target.holesReadAsZero) await target.write(chunk, chunkStart, interruption);
          progress.advance(chunkBytes);
        }
        if (!extent.mapped && zeros === null) progress.advance(extent.length);
      }
    }
  } finally {
    progress.stop();
  }
  return dataBytes;
}
