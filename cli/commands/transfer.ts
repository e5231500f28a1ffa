// Commands that move bytes between a volume and a raw image file: import, export.

import type { Command } from "commander";
import { rm, type FileHandle } from "node:fs/promises";
import path from "node:path";
import { IoError, ThinpError, type ErrorCode } from "../../src/errors.js";
import { assert } from "../../src/io/assert.js";
import type { VolumeHandle } from "../../src/thin/api.js";
import { addPoolOption, type PoolOptions } from "../options.js";
import { exportUri, shellQuote } from "../nbd-attach.js";
import { refuseWhileServed, resolvePoolPath, withPool } from "../pool-session.js";
import { startProgress } from "../progress.js";
import { formatSize, parseSize } from "../size.js";
import { createOutputFile, onUserFile, openInputFile } from "../user-files.js";
import { zeroBlockRuns } from "../zero-runs.js";

/** Bytes read from the file or the volume per step: large enough to stream well, small enough to bound memory. */
const TRANSFER_CHUNK_BYTES = 4 * 1024 * 1024;
/** Bytes of volume whose extents are asked for at once, so a fragmented volume's extent list stays bounded. */
const EXTENT_WINDOW_BYTES = 1024 * 1024 * 1024;

export function registerTransferCommands(program: Command): void {
  addPoolOption(
    program
      .command("import")
      .description("write a file into a volume; whole blocks of zeros are discarded rather than written")
      .argument("<name>", "volume to write")
      .argument("<file>", "raw image or any regular file")
      .option("--offset <bytes>", "byte offset in the volume to write at (suffixes K, M, G, T allowed)", "0"),
  ).action(importFile);

  addPoolOption(
    program
      .command("export")
      .description("write a volume to a sparse raw image: unmapped and all-zero blocks stay holes")
      .argument("<name>", "volume to read")
      .argument("<file>", "image file to create")
      .option("--force", "replace the file if it exists"),
  ).action(exportVolume);
}

/** The input file would run past the end of the volume; nothing has been written. */
class ImportTooLargeError extends ThinpError {
  readonly code: ErrorCode = "OUT_OF_RANGE";
  constructor(filePath: string, fileBytes: number, offset: number, volume: VolumeHandle) {
    super(
      `${filePath} (${fileBytes} bytes, ${formatSize(fileBytes)}) does not fit in '${volume.name}' at offset ${offset}: ` +
        `it needs ${offset + fileBytes} bytes and the volume has ${volume.sizeBytes} (${formatSize(volume.sizeBytes)}); ` +
        `grow it with 'thinp resize ${volume.name} --size SIZE'`,
    );
  }
}

interface ImportTally {
  writtenBytes: number;
  discardedBytes: number;
}

async function importFile(
  volumeName: string,
  filePath: string,
  options: PoolOptions & { offset: string },
): Promise<void> {
  const offset = parseSize(options.offset);
  const metaPath = resolvePoolPath(options.pool);
  // nbdcopy writes from the start of the export; at another offset there is no one-line way round.
  await refuseWhileServed(metaPath, (nbd) =>
    nbd && offset === 0 ? `copy with nbdcopy ${shellQuote(filePath)} ${shellQuote(exportUri(nbd, volumeName))}` : "",
  );
  const tally = await withPool(metaPath, "write", async (pool) => {
    const volume = await pool.volume(volumeName);
    return copyFileIntoVolume(filePath, volume, offset, pool.status().dataBlockBytes);
  });
  process.stdout.write(
    `imported ${formatSize(tally.writtenBytes + tally.discardedBytes)} from ${filePath} into ${volumeName} at offset ${offset}` +
      ` (${formatSize(tally.writtenBytes)} written, ${formatSize(tally.discardedBytes)} of zero blocks discarded)\n`,
  );
}

async function copyFileIntoVolume(
  filePath: string,
  volume: VolumeHandle,
  offset: number,
  blockBytes: number,
): Promise<ImportTally> {
  // Keeps every chunk after the first block-aligned, so zero blocks are seen whole.
  assert(TRANSFER_CHUNK_BYTES % blockBytes === 0, `transfer chunk ${TRANSFER_CHUNK_BYTES} for blocks of ${blockBytes}`);
  const input = await openInputFile(filePath);
  const tally: ImportTally = { writtenBytes: 0, discardedBytes: 0 };
  try {
    const fileBytes = (await onUserFile(filePath, "input file", () => input.stat())).size;
    if (offset + fileBytes > volume.sizeBytes) throw new ImportTooLargeError(filePath, fileBytes, offset, volume);
    const progress = startProgress(`import ${volume.name}`, fileBytes);
    try {
      const buffer = Buffer.alloc(TRANSFER_CHUNK_BYTES);
      let fileOffset = 0;
      while (fileOffset < fileBytes) {
        const volumeOffset = offset + fileOffset;
        // The first chunk stops at a block boundary, so every later chunk starts on one.
        const chunkBytes = Math.min(TRANSFER_CHUNK_BYTES - (volumeOffset % blockBytes), fileBytes - fileOffset);
        const chunk = buffer.subarray(0, chunkBytes);
        await readFully(filePath, input, chunk, fileOffset);
        for (const run of zeroBlockRuns(volumeOffset, chunk, blockBytes)) {
          if (run.zero) {
            await volume.discard(volumeOffset + run.start, run.byteLength);
            tally.discardedBytes += run.byteLength;
          } else {
            await volume.write(volumeOffset + run.start, chunk.subarray(run.start, run.start + run.byteLength));
            tally.writtenBytes += run.byteLength;
          }
        }
        fileOffset += chunkBytes;
        progress.advance(chunkBytes);
      }
    } finally {
      progress.stop();
    }
  } finally {
    await input.close();
  }
  return tally;
}

async function readFully(
  filePath: string,
  input: FileHandle,
  target: Buffer,
  fileOffset: number,
): Promise<void> {
  let filled = 0;
  while (filled < target.length) {
    const { bytesRead } = await onUserFile(filePath, "input file", () =>
      input.read(target, filled, target.length - filled, fileOffset + filled),
    );
    if (bytesRead === 0) {
      throw new InputShrankError(filePath, fileOffset + filled);
    }
    filled += bytesRead;
  }
}

/** The file got shorter while it was being imported. */
class InputShrankError extends ThinpError {
  readonly code: ErrorCode = "IO_ERROR";
  constructor(filePath: string, atOffset: number) {
    super(`${filePath} ended at byte ${atOffset} while it was being imported; was it truncated?`);
  }
}

async function exportVolume(volumeName: string, filePath: string, options: PoolOptions & { force?: boolean }): Promise<void> {
  const metaPath = resolvePoolPath(options.pool);
  await refuseWhileServed(metaPath, (nbd) =>
    nbd ? `copy with nbdcopy ${shellQuote(exportUri(nbd, volumeName))} ${shellQuote(filePath)}` : "",
  );
  const { sizeBytes, writtenBytes } = await withPool(metaPath, "read", async (pool) => {
    const volume = await pool.volume(volumeName);
    const blockBytes = pool.status().dataBlockBytes;
    const output = await createOutputFile(filePath, options.force === true);
    try {
      const writtenBytes = await copyVolumeIntoFile(volume, output, filePath, blockBytes);
      await onUserFile(filePath, "output file", () => output.close());
      return { sizeBytes: volume.sizeBytes, writtenBytes };
    } catch (failure) {
      // A half-written image would look like a good one; leave nothing behind.
      await output.close().catch(() => undefined);
      await rm(filePath, { force: true });
      throw failure;
    }
  });
  process.stdout.write(
    `exported ${volumeName} (${formatSize(sizeBytes)}) to ${path.basename(filePath)}: ` +
      `${formatSize(writtenBytes)} of data, the rest left as holes\n`,
  );
}

/** Returns the number of bytes written; everything else in the file is a hole. */
async function copyVolumeIntoFile(
  volume: VolumeHandle,
  output: FileHandle,
  filePath: string,
  blockBytes: number,
): Promise<number> {
  // Setting the length first makes every byte not written below a hole that reads as zero.
  await onUserFile(filePath, "output file", () => output.truncate(volume.sizeBytes));
  const progress = startProgress(`export ${volume.name}`, volume.sizeBytes);
  let writtenBytes = 0;
  try {
    for (let windowStart = 0; windowStart < volume.sizeBytes; windowStart += EXTENT_WINDOW_BYTES) {
      const windowBytes = Math.min(EXTENT_WINDOW_BYTES, volume.sizeBytes - windowStart);
      for (const extent of await volume.extents(windowStart, windowBytes)) {
        if (!extent.mapped) {
          progress.advance(extent.length);
          continue;
        }
        const extentEnd = extent.offset + extent.length;
        for (let chunkStart = extent.offset; chunkStart < extentEnd; chunkStart += TRANSFER_CHUNK_BYTES) {
          const chunkBytes = Math.min(TRANSFER_CHUNK_BYTES, extentEnd - chunkStart);
          const chunk = await volume.read(chunkStart, chunkBytes);
          for (const run of zeroBlockRuns(chunkStart, chunk, blockBytes)) {
            if (run.zero) continue;
            await writeFully(output, filePath, chunk.subarray(run.start, run.start + run.byteLength), chunkStart + run.start);
            writtenBytes += run.byteLength;
          }
          progress.advance(chunkBytes);
        }
      }
    }
  } finally {
    progress.stop();
  }
  return writtenBytes;
}

async function writeFully(output: FileHandle, filePath: string, bytes: Buffer, position: number): Promise<void> {
  let done = 0;
  while (done < bytes.length) {
    const { bytesWritten } = await onUserFile(filePath, "output file", () =>
      output.write(bytes, done, bytes.length - done, position + done),
    );
    if (bytesWritten === 0) throw new IoError(filePath, new Error(`no bytes written at offset ${position + done}`));
    done += bytesWritten;
  }
}
