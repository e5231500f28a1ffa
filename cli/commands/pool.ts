// Commands about the pool as a whole: create-pool, resize-pool, status, check.

import type { Command } from "commander";
import path from "node:path";
import { InvalidSizeError, ThinpError, type ErrorCode } from "../../src/errors.js";
import type { PoolStatus } from "../../src/thin/api.js";
import { checkPool, type CheckReport } from "../../src/thin/check.js";
import { DATA_BLOCK_BYTES, DEFAULT_POOL_BYTES } from "../../src/thin/limits.js";
import { DATA_USE_WARNING_PERCENT_DEFAULT, dataUseWarning } from "../../src/thin/space-warning.js";
import { Pool } from "../../src/thin/pool.js";
import { addPoolOption, type PoolOptions } from "../options.js";
import { refuseWhileServed, resolvePoolPath, withOperations } from "../pool-session.js";
import { formatSize, parseSize } from "../size.js";
import { renderFields } from "../table.js";
import { requireFolderOf } from "../user-files.js";

export function registerPoolCommands(program: Command): void {
  program
    .command("create-pool")
    .description("create a pool: a data file holding the volumes' blocks and a metadata file describing them")
    .argument("<data>", "data file to create")
    .argument("<meta>", "metadata file to create")
    .option("--size <size>", `size of the data file, e.g. 64K, 512M, 10G, 1.5T (default: ${formatSize(DEFAULT_POOL_BYTES)})`)
    .action(createPool);

  addPoolOption(
    program
      .command("resize-pool")
      .description("grow the pool's data file (pools never shrink)")
      .requiredOption("--size <size>", "new size of the data file"),
  ).action(resizePool);

  addPoolOption(
    program
      .command("status")
      .description("show data and metadata space used, the transaction id and block sizes")
      .option("--json", "print machine-readable JSON")
      .option("--warn-at <percent>", `warn on stderr when data use reaches this percentage (default: ${DATA_USE_WARNING_PERCENT_DEFAULT})`),
  ).action(showStatus);

  addPoolOption(
    program
      .command("check")
      .description("verify every metadata block and reference count; exits non-zero listing each problem")
      .option("--json", "print the report as JSON"),
  ).action(runCheck);
}

async function createPool(dataPath: string, metaPath: string, options: { size?: string }): Promise<void> {
  const sizeBytes = options.size === undefined ? DEFAULT_POOL_BYTES : parseSize(options.size);
  if (namedTheWrongWayRound(dataPath, metaPath)) throw new SwappedPoolFilesError(dataPath, metaPath);
  for (const filePath of [dataPath, metaPath]) await requireFolderOf(filePath);
  const pool = await Pool.create(dataPath, metaPath, { sizeBytes });
  try {
    await pool.commit();
    const status = pool.status();
    process.stdout.write(
      `created pool: ${formatSize(status.dataBlocksTotal * status.dataBlockBytes)} of data in ${dataPath} ` +
        `(${status.dataBlocksTotal} blocks of ${formatSize(status.dataBlockBytes)}), metadata in ${metaPath}\n`,
    );
  } finally {
    await pool.close();
  }
}

/**
 * True only when the names leave no doubt: the first says metadata and the second says
 * data (and not metadata). Any other pair of names is taken in the order given.
 */
function namedTheWrongWayRound(dataPath: string, metaPath: string): boolean {
  const first = path.basename(dataPath).toLowerCase();
  const second = path.basename(metaPath).toLowerCase();
  return first.includes("meta") && second.includes("data") && !second.includes("meta");
}

/** create-pool's files given the wrong way round: the data file comes first. */
class SwappedPoolFilesError extends ThinpError {
  // A command line to be retyped, like any other usage error: exit 2.
  readonly code: ErrorCode = "INVALID_NAME";
  constructor(firstPath: string, secondPath: string) {
    super(
      `${firstPath} looks like a metadata file and ${secondPath} like a data file, but the data file comes first: ` +
        `thinp create-pool ${secondPath} ${firstPath}`,
    );
  }
}

async function resizePool(options: PoolOptions & { size: string }): Promise<void> {
  const sizeBytes = parseSize(options.size);
  const status = await withOperations(resolvePoolPath(options.pool), "write", (pool) => pool.resizePool(sizeBytes));
  process.stdout.write(
    `pool is now ${formatSize(status.dataBlocksTotal * status.dataBlockBytes)} (${status.dataBlocksTotal} data blocks)\n`,
  );
}

async function showStatus(options: PoolOptions & { json?: boolean; warnAt?: string }): Promise<void> {
  const threshold = options.warnAt === undefined ? DATA_USE_WARNING_PERCENT_DEFAULT : parsePercent(options.warnAt);
  const status = await withOperations(resolvePoolPath(options.pool), "read", (pool) => pool.status());
  process.stdout.write(options.json ? JSON.stringify(status, null, 2) + "\n" : renderStatus(status));
  const warning = dataUseWarning(status, threshold);
  if (warning) process.stderr.write(`thinp: warning: ${warning}\n`);
}

/** `which`: the space map whose damage makes `used` unknown (null). */
function usedOfTotal(used: number | null, total: number, which: string): string {
  if (used === null) return `unknown of ${total} (the ${which} space map cannot be read)`;
  const percent = total === 0 ? 0 : (used / total) * 100;
  return `${used} of ${total} used (${percent.toFixed(1)}%)`;
}

function renderStatus(status: PoolStatus): string {
  const dataTotal = formatSize(status.dataBlocksTotal * status.dataBlockBytes);
  const fields: [string, string][] = [
    ["data blocks", usedOfTotal(status.dataBlocksUsed, status.dataBlocksTotal, "data")],
    ["data block size", formatSize(status.dataBlockBytes)],
    [
      "data used",
      `${status.dataBlocksUsed === null ? "unknown" : formatSize(status.dataBlocksUsed * status.dataBlockBytes)} of ${dataTotal}`,
    ],
    ...(status.dataFileAllocatedBytes === null
      ? []
      : [["data file on disk", `${formatSize(status.dataFileAllocatedBytes)} allocated`] as [string, string]]),
    ["metadata blocks", usedOfTotal(status.metadataBlocksUsed, status.metadataBlocksTotal, "metadata")],
    ["metadata block size", formatSize(status.metadataBlockBytes)],
    ["transaction id", String(status.transactionId)],
    ["volumes", String(status.volumeCount)],
    ...(status.hiddenVolumeCount > 0
      ? [["hidden volumes", `${status.hiddenVolumeCount} (holds of reads under way, receives not yet published)`] as [string, string]]
      : []),
    ["uuid", status.uuid],
    ["data file", status.dataPath],
    ["metadata file", status.metaPath],
  ];
  if (status.degraded) fields.push(["degraded", status.degraded.message]);
  return renderFields(fields);
}

/** The check found problems; the report itself has already been printed. */
class CheckFailedError extends ThinpError {
  readonly code: ErrorCode = "CORRUPT";
  constructor(metaPath: string, problemCount: number) {
    super(`check of ${metaPath} found ${problemCount} problem${problemCount === 1 ? "" : "s"}`);
  }
}

async function runCheck(options: PoolOptions & { json?: boolean }): Promise<void> {
  const metaPath = resolvePoolPath(options.pool);
  // A served pool changes under the check; nothing but stopping the server makes it hold still.
  await refuseWhileServed(metaPath, () => "");
  const report = await checkPool(metaPath);
  process.stdout.write(options.json ? JSON.stringify(report, null, 2) + "\n" : renderCheckReport(metaPath, report));
  if (!report.clean) throw new CheckFailedError(metaPath, report.problems.length);
}

/** The engine's message usually names the block already; say it only when it does not. */
function describeProblem(problem: CheckReport["problems"][number]): string {
  const { blockIndex, message } = problem;
  if (blockIndex === undefined || blockIndex === null || new RegExp(`\\bblock ${blockIndex}\\b`).test(message)) return message;
  return `${message} (metadata block ${blockIndex})`;
}

/** A data file that is whole; one missing or short is a problem, listed with the others (null here). */
function describeDataFile({ path, byteLength, neededBytes }: NonNullable<CheckReport["dataFile"]>): string | null {
  if (byteLength === null || byteLength < neededBytes) return null;
  const blocks = counted(neededBytes / DATA_BLOCK_BYTES, "block");
  if (byteLength === neededBytes) return `data file ${path}: ${byteLength} bytes, as the pool's ${blocks} need`;
  // resize-pool grows the file before the metadata: a crash between the two leaves it longer.
  return `data file ${path}: ${byteLength} bytes, more than the ${neededBytes} the pool's ${blocks} need (harmless)`;
}

function counted(count: number, noun: string): string {
  return `${count} ${noun}${count === 1 ? "" : "s"}`;
}

function renderCheckReport(metaPath: string, report: CheckReport): string {
  const { verified } = report;
  const lines = [
    `checked ${metaPath} at transaction ${verified.transactionId}: ` +
      `${counted(verified.metadataBlocks, "metadata block")} (${counted(verified.treeNodes, "tree node")}), ` +
      `${counted(verified.volumes, "volume")}, ${counted(verified.mappings, "mapping")}, ` +
      `${counted(verified.dataBlocksReferenced, "data block")} referenced`,
  ];
  const dataFileLine = report.dataFile && describeDataFile(report.dataFile);
  if (dataFileLine) lines.push(dataFileLine);
  for (const note of report.notes) lines.push(`note: ${note}`);
  for (const problem of report.problems) lines.push(`problem: ${describeProblem(problem)}`);
  lines.push(report.clean ? "clean" : `${report.problems.length} problem(s) found`);
  return lines.join("\n") + "\n";
}

function parsePercent(text: string): number {
  const percent = Number(text);
  if (!Number.isFinite(percent) || percent < 0 || percent > 100) {
    throw new InvalidSizeError(`--warn-at '${text}' is not a percentage from 0 to 100`);
  }
  return percent;
}
