// thinp repair: salvage a damaged pool's metadata into a new, consistent metadata file, and
// say exactly what was changed and what was lost.

import { Option, type Command } from "commander";
import { relative } from "node:path";
import {
  KEY_END,
  repairPool,
  type KeyRange,
  type RepairPoolResult,
  type RepairReport,
  type SpaceMapOutcome,
  type VolumeOutcome,
} from "../../src/thin/repair.js";
import { addPoolOption, type PoolOptions } from "../options.js";
import { refuseWhileServed, resolvePoolPath } from "../pool-session.js";

/** Items of one kind listed in the text report; --json carries up to the engine's own limit. */
const TEXT_ITEMS_MAX = 20;

interface RepairOptions extends PoolOptions {
  output?: string;
  inPlace?: boolean;
  json?: boolean;
}

export function registerRepairCommand(program: Command): void {
  addPoolOption(
    program
      .command("repair")
      .description("salvage damaged metadata into a new, consistent metadata file; reports what it changed and what it lost")
      .option("--output <new-meta>", "where to write the repaired metadata file (default: <meta>.repaired; must not exist)")
      .addOption(new Option("--in-place", "replace the metadata file, keeping the old one as <meta>.before-repair").conflicts("output"))
      .option("--json", "print the report as JSON"),
  ).action(runRepair);
}

async function runRepair(options: RepairOptions): Promise<void> {
  const metaPath = resolvePoolPath(options.pool);
  // A served pool changes under the repair; nothing but stopping the server makes it hold still.
  await refuseWhileServed(metaPath, () => "");
  const result = await repairPool(metaPath, {
    ...(options.output !== undefined ? { outputPath: options.output } : {}),
    inPlace: options.inPlace ?? false,
  });
  process.stdout.write(options.json ? JSON.stringify(result, null, 2) + "\n" : renderRepair(result));
}

function renderRepair({ report, outputPath, backupPath }: RepairPoolResult): string {
  const { source, output } = report;
  const lines = [
    `repaired ${source.path} at transaction ${source.transactionId} (superblock copy ${source.superblockSlot}) into ${outputPath}`,
  ];
  for (const volume of report.volumes) lines.push(...renderVolume(volume));
  for (const lost of report.volumesLost.slice(0, TEXT_ITEMS_MAX)) {
    lines.push(`volume lost: ${describeIds(lost.volumeIds)}: metadata block ${lost.blockIndex}: ${lost.reason}`);
  }
  if (report.volumesLost.length > TEXT_ITEMS_MAX)
    lines.push(`... and ${report.volumesLost.length - TEXT_ITEMS_MAX} more lost volume records`);
  lines.push(`data space map: ${describeSpaceMap(report.dataSpaceMap, "data")}`);
  lines.push(`metadata space map: ${describeSpaceMap(report.metadataSpaceMap, "metadata")}`);
  for (const note of report.notes) lines.push(`note: ${note}`);
  lines.push(
    `result: ${counted(output.volumes, "volume")}, ${counted(output.mappings, "mapping")}, ` +
      `${output.dataBlocksUsed} data and ${output.metadataBlocksUsed} metadata blocks in use; checks clean`,
  );
  lines.push(describeLoss(report));
  if (backupPath !== null) {
    lines.push(`the pool now uses the repaired metadata; the old metadata file is kept as ${backupPath}`);
  } else {
    const output = relative(process.cwd(), outputPath) || outputPath;
    const original = relative(process.cwd(), source.path) || source.path;
    // The data file names the original as its pool's metadata, so the copy opens only there.
    lines.push(
      `the pool is unchanged, and ${output} is refused until it is put in place: stop everything using the pool, then ` +
        `mv ${original} ${original}.old && mv ${output} ${original} (or run repair --in-place)`,
    );
  }
  return lines.join("\n") + "\n";
}

function renderVolume(volume: VolumeOutcome): string[] {
  const title = `volume '${volume.name}' (id ${volume.id})`;
  const lines: string[] = [];
  if (volume.mappingsLost === 0 && volume.lostSubtrees.length === 0) {
    lines.push(`${title}: kept all ${counted(volume.mappingsKept, "mapping")}`);
  } else {
    lines.push(`${title}: kept ${volume.mappingsKept} of ${counted(volume.mappingsRecorded, "mapping")}, LOST ${volume.mappingsLost}`);
  }
  for (const lost of volume.lostSubtrees.slice(0, TEXT_ITEMS_MAX)) {
    lines.push(
      `  metadata block ${lost.blockIndex} is unreadable (${lost.reason}): ${describeVirtualBlocks(lost.virtualBlocks)} lost their mappings and read as zeros`,
    );
  }
  if (volume.lostSubtrees.length > TEXT_ITEMS_MAX)
    lines.push(`  ... and ${volume.lostSubtrees.length - TEXT_ITEMS_MAX} more unreadable blocks`);
  for (const refused of volume.refusedMappings.slice(0, TEXT_ITEMS_MAX)) {
    const which = refused.virtualBlock === null ? "a mapping" : `virtual block ${refused.virtualBlock}`;
    lines.push(`  ${which} in metadata block ${refused.blockIndex} dropped: ${refused.reason}`);
  }
  if (volume.refusedMappingCount > TEXT_ITEMS_MAX)
    lines.push(`  ... and ${volume.refusedMappingCount - TEXT_ITEMS_MAX} more dropped mappings`);
  for (const fix of volume.fixes) lines.push(`  fixed: ${fix}`);
  return lines;
}

function describeSpaceMap(outcome: SpaceMapOutcome, which: "data" | "metadata"): string {
  if (!outcome.compared) {
    const freed =
      outcome.freedWithLostMappings === null
        ? ""
        : `; ${counted(outcome.freedWithLostMappings, "block")} it counted ${outcome.freedWithLostMappings === 1 ? "is" : "are"} free now (leaked, or held only by lost mappings)`;
    return `rebuilt from the salvaged trees; not compared with the old map: ${outcome.notComparedBecause}${freed}`;
  }
  if (outcome.reclaimed === 0 && outcome.corrected === 0) return "every count was right";
  const parts: string[] = [];
  if (outcome.reclaimed > 0) {
    parts.push(
      `${counted(outcome.reclaimed, `leaked ${which} block`)} reclaimed (${listed(outcome.reclaimedBlocks.map(String), outcome.reclaimed)})`,
    );
  }
  if (outcome.corrected > 0) {
    const corrections = outcome.correctedBlocks.map(({ blockIndex, was, now }) => `block ${blockIndex}: ${was} -> ${now}`);
    parts.push(`${counted(outcome.corrected, "reference count")} corrected (${listed(corrections, outcome.corrected)})`);
  }
  return parts.join("; ");
}

function describeLoss(report: RepairReport): string {
  if (!report.lostData) return "nothing was lost";
  const mappings = report.volumes.reduce((sum, volume) => sum + volume.mappingsLost, 0);
  const volumesHit = report.volumes.filter((volume) => volume.mappingsLost > 0 || volume.lostSubtrees.length > 0).length;
  const parts = [];
  if (volumesHit > 0)
    parts.push(`${counted(mappings, "mapping")} of ${counted(volumesHit, "volume")} (those virtual blocks now read as zeros)`);
  if (report.volumesLost.length > 0)
    parts.push(`${counted(report.volumesLost.length, "unreadable volume record")} (those volumes are gone)`);
  return `DATA WAS LOST: ${parts.join("; ")}`;
}

function describeVirtualBlocks(range: KeyRange): string {
  if (range === null) return "virtual blocks the damaged node cannot say";
  if (range.first >= range.end) return "no virtual blocks within the volume's size";
  return range.end - range.first === 1 ? `virtual block ${range.first}` : `virtual blocks ${range.first}-${range.end - 1}`;
}

function describeIds(range: KeyRange): string {
  if (range === null) return "volume ids the damaged node cannot say";
  if (range.end - range.first === 1) return `volume id ${range.first}`;
  return range.end === KEY_END ? `every volume id from ${range.first}` : `volume ids ${range.first}-${range.end - 1}`;
}

function listed(items: string[], total: number): string {
  const shown = items.slice(0, TEXT_ITEMS_MAX);
  return total > shown.length ? `${shown.join(", ")}, ... ${total - shown.length} more` : shown.join(", ");
}

function counted(count: number, noun: string): string {
  return `${count} ${noun}${count === 1 ? "" : "s"}`;
}
