// Commands about volumes: create, snapshot, delete, resize, list. Each works the same
// on a pool at rest and on one a `thinp serve` owns (see withOperations).

import type { Command } from "commander";
import type { PoolOperations } from "../../src/control/pool-operations.js";
import { ThinpError } from "../../src/errors.js";
import type { VolumeInfo, VolumeUsage } from "../../src/thin/api.js";
import { addPoolOption, type PoolOptions } from "../options.js";
import { resolvePoolPath, withOperations } from "../pool-session.js";
import { formatSize, parseSize } from "../size.js";
import { renderTable, type Column } from "../table.js";

export function registerVolumeCommands(program: Command): void {
  addPoolOption(
    program
      .command("create")
      .description("create a thin volume; it takes no data blocks until written")
      .argument("<name>", "volume name")
      .requiredOption("--size <size>", "virtual size, e.g. 256M, 10G"),
  ).action(createVolume);

  addPoolOption(
    program
      .command("snapshot")
      .description("snapshot a volume: the new volume shares all of its origin's blocks until either is written")
      .argument("<origin>", "volume to snapshot")
      .argument("<name>", "name of the new volume")
      .option("--read-only", "make the snapshot read-only"),
  ).action(snapshotVolume);

  addPoolOption(
    program
      .command("delete")
      .description("delete a volume, freeing the blocks no other volume shares")
      .argument("<name>", "volume name")
      .option("--defer", "if NBD clients have it open, delete it when the last one disconnects (hidden meanwhile)"),
  ).action(deleteVolume);

  addPoolOption(
    program
      .command("resize")
      .description("change a volume's virtual size; shrinking below mapped data, or under NBD clients, is refused")
      .argument("<name>", "volume name")
      .requiredOption("--size <size>", "new virtual size")
      .option("--force", "shrink even while NBD clients have it open (their requests past the new end fail)"),
  ).action(resizeVolume);

  addPoolOption(
    program
      .command("list")
      .description("list volumes with their size and how much data each maps, owns and shares")
      .option("--json", "print machine-readable JSON"),
  ).action(listVolumes);
}

async function createVolume(name: string, options: PoolOptions & { size: string }): Promise<void> {
  const sizeBytes = parseSize(options.size);
  const info = await withOperations(resolvePoolPath(options.pool), "write", (pool) => pool.createVolume(name, sizeBytes));
  process.stdout.write(`created volume ${info.name} (${formatSize(info.sizeBytes)})\n`);
}

async function snapshotVolume(originName: string, name: string, options: PoolOptions & { readOnly?: boolean }): Promise<void> {
  const readOnly = options.readOnly === true;
  const info = await withOperations(resolvePoolPath(options.pool), "write", (pool) => pool.snapshot(originName, name, { readOnly }));
  process.stdout.write(`created snapshot ${info.name} of ${originName}${info.readOnly ? " (read-only)" : ""}\n`);
}

async function deleteVolume(name: string, options: PoolOptions & { defer?: boolean }): Promise<void> {
  const defer = options.defer === true;
  const { deferred } = await withOperations(resolvePoolPath(options.pool), "write", (pool) => pool.deleteVolume(name, { defer }));
  process.stdout.write(
    deferred
      ? `volume ${name} will be deleted when its last NBD client disconnects; it is no longer listed or exported\n`
      : `deleted volume ${name}\n`,
  );
}

async function resizeVolume(name: string, options: PoolOptions & { size: string; force?: boolean }): Promise<void> {
  const sizeBytes = parseSize(options.size);
  const force = options.force === true;
  const info = await withOperations(resolvePoolPath(options.pool), "write", (pool) => pool.resizeVolume(name, sizeBytes, { force }));
  process.stdout.write(`resized volume ${info.name} to ${formatSize(info.sizeBytes)}\n`);
  const clients = info.shrunkUnderClients;
  if (clients > 0) {
    process.stderr.write(
      `thinp: warning: ${clients} NBD client${clients === 1 ? " has" : "s have"} '${info.name}' open; ` +
        `${clients === 1 ? "its" : "their"} reads and writes past the new end (byte ${info.sizeBytes}) will fail\n`,
    );
  }
}

interface ListedVolume {
  info: VolumeInfo;
  usage: VolumeUsage;
}

async function listVolumes(options: PoolOptions & { json?: boolean }): Promise<void> {
  const { volumes, blockBytes } = await withOperations(resolvePoolPath(options.pool), "read", async (pool) => ({
    volumes: await listWithUsage(pool),
    blockBytes: (await pool.status()).dataBlockBytes,
  }));
  process.stdout.write(options.json ? renderListJson(volumes, blockBytes) : renderListTable(volumes, blockBytes));
}

async function listWithUsage(pool: PoolOperations): Promise<ListedVolume[]> {
  const listed: ListedVolume[] = [];
  for (const info of await pool.listVolumes()) {
    try {
      listed.push({ info, usage: await pool.usage(info.name) });
    } catch (failure) {
      // A served pool may lose a volume between the listing and its usage; it is simply gone.
      if (failure instanceof ThinpError && failure.code === "NO_SUCH_VOLUME") continue;
      // A damaged mapping tree costs that volume's counts, not the listing of every volume.
      if (failure instanceof ThinpError && failure.code === "CORRUPT") {
        process.stderr.write(
          `thinp: warning: cannot count the blocks of '${info.name}': ${failure.message}; ` +
            `'thinp check' lists the damage and 'thinp repair' salvages what is readable\n`,
        );
        listed.push({ info, usage: { mappedBlocks: info.mappedBlocks, exclusiveBlocks: null, sharedBlocks: null } });
        continue;
      }
      throw failure;
    }
  }
  return listed;
}

/** The shape scripts rely on; documented in the README's CLI reference. */
function renderListJson(volumes: readonly ListedVolume[], blockBytes: number): string {
  const document = {
    dataBlockBytes: blockBytes,
    volumes: volumes.map(({ info, usage }) => ({
      name: info.name,
      id: info.id,
      uuid: info.uuid,
      sizeBytes: info.sizeBytes,
      mappedBlocks: usage.mappedBlocks,
      exclusiveBlocks: usage.exclusiveBlocks,
      sharedBlocks: usage.sharedBlocks,
      originName: info.originName,
      readOnly: info.readOnly,
      createdAt: new Date(info.createdAt).toISOString(),
      snapshotAt: info.snapshotAt === null ? null : new Date(info.snapshotAt).toISOString(),
    })),
  };
  return JSON.stringify(document, null, 2) + "\n";
}

const LIST_COLUMNS: readonly Column[] = [
  { header: "NAME", align: "left" },
  { header: "SIZE", align: "right" },
  { header: "MAPPED", align: "right" },
  { header: "EXCLUSIVE", align: "right" },
  { header: "SHARED", align: "right" },
  { header: "ORIGIN", align: "left" },
  { header: "CREATED", align: "left" },
];

function renderListTable(volumes: readonly ListedVolume[], blockBytes: number): string {
  const rows = volumes.map(({ info, usage }) => [
    info.readOnly ? `${info.name} (ro)` : info.name,
    formatSize(info.sizeBytes),
    formatSize(usage.mappedBlocks * blockBytes),
    blocksSize(usage.exclusiveBlocks, blockBytes),
    blocksSize(usage.sharedBlocks, blockBytes),
    info.originName ?? "-",
    formatLocalTime(info.createdAt),
  ]);
  return renderTable(LIST_COLUMNS, rows);
}

/** Null: not known, because a space map or the volume's tree could not be read. */
function blocksSize(blockCount: number | null, blockBytes: number): string {
  return blockCount === null ? "unknown" : formatSize(blockCount * blockBytes);
}

/** "2025-11-28 14:07:09" in the local time zone: for people; JSON carries UTC. */
function formatLocalTime(epochMs: number): string {
  const at = new Date(epochMs);
  const pad = (value: number): string => String(value).padStart(2, "0");
  return (
    `${at.getFullYear()}-${pad(at.getMonth() + 1)}-${pad(at.getDate())} ` +
    `${pad(at.getHours())}:${pad(at.getMinutes())}:${pad(at.getSeconds())}`
  );
}
