// thinp restore: adopt a dm-thin pool (Linux dm-thin, LVM thin, Docker's devicemapper
// loopback files) in place: a thinp metadata file for its existing data file, from the XML
// thin_dump prints. The data file's bytes are never written.

import type { Command } from "commander";
import { stat } from "node:fs/promises";
import { InvalidArgumentError } from "../../src/errors.js";
import { restorePool, type DeviceNaming, type RestoreReport } from "../../src/thin/adopt/restore.js";
import { XmlDumpSource } from "../../src/thin/adopt/xml-source.js";
import { DmMetadataSource } from "../../src/thin/adopt/dm-metadata-source.js";
import { NodeStorageFile } from "../../src/io/node-storage-file.js";
import { dockerMetadataNaming, namesFileNaming } from "../device-names.js";
import { startProgress } from "../progress.js";
import { formatSize } from "../size.js";
import { renderTable, type Column } from "../table.js";

interface RestoreCliOptions {
  fromDmMetadata?: boolean;
  names?: string;
  dockerMetadata?: string;
  json?: boolean;
}

export function registerRestoreCommand(program: Command): void {
  program
    .command("restore")
    .description(
      "adopt a dm-thin pool in place: build thinp metadata for its data file from thin_dump's XML, or from the dm-thin metadata itself",
    )
    .argument("<xml>", "what thin_dump printed for the pool (with --from-dm-metadata: the pool's dm-thin metadata file or device)")
    .argument("<data>", "the pool's existing data file (64 KiB blocks); never written")
    .argument("<meta>", "the thinp metadata file to create")
    .option("--from-dm-metadata", "read the kernel's binary metadata directly, for hosts without thin-provisioning-tools")
    .option("--names <file>", "name the devices: lines of 'dev_id name [size]' (default: devN)")
    .option("--docker-metadata <dir>", "name and size the devices from Docker's devicemapper metadata folder, skipping deleted ones")
    .option("--json", "print what was restored as JSON")
    .action(restore);
}

async function restore(sourcePath: string, dataPath: string, metaPath: string, options: RestoreCliOptions): Promise<void> {
  if (options.names !== undefined && options.dockerMetadata !== undefined) {
    throw new InvalidArgumentError("--names and --docker-metadata do not go together: give one");
  }
  let naming: DeviceNaming | undefined;
  if (options.names !== undefined) naming = await namesFileNaming(options.names);
  if (options.dockerMetadata !== undefined) naming = await dockerMetadataNaming(options.dockerMetadata);
  let report: RestoreReport;
  if (options.fromDmMetadata) {
    const file = await NodeStorageFile.open(sourcePath, "read-only", "dm-thin metadata file");
    try {
      report = await restorePool(new DmMetadataSource(file), dataPath, metaPath, { naming });
    } finally {
      await file.close();
    }
  } else {
    const xmlBytes = await stat(sourcePath).then(
      (found) => found.size,
      () => null,
    );
    const progress = startProgress(`restore from ${sourcePath}`, xmlBytes);
    try {
      report = await restorePool(new XmlDumpSource(sourcePath, (byteCount) => progress.advance(byteCount)), dataPath, metaPath, { naming });
    } finally {
      progress.stop();
    }
  }
  if (options.json) {
    process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
    return;
  }
  process.stdout.write(renderReport(report, metaPath, dataPath));
}

function renderReport(report: RestoreReport, metaPath: string, dataPath: string): string {
  const columns: Column[] = [
    { header: "DEV_ID", align: "right" },
    { header: "NAME", align: "left" },
    { header: "SIZE", align: "right" },
    { header: "MAPPED", align: "right" },
  ];
  const rows = report.volumes.map((volume) => [
    String(volume.devId),
    volume.name,
    formatSize(volume.sizeBytes),
    formatSize(volume.mappedBlocks * 65536),
  ]);
  const lines = [
    `restored ${report.volumes.length} volume${report.volumes.length === 1 ? "" : "s"} into ${metaPath} over ${dataPath} ` +
      `(${report.dataBlocksUsed} of ${report.dataBlocks} data blocks in use; checked clean)`,
    renderTable(columns, rows).trimEnd(),
  ];
  for (const volume of report.volumes) {
    if (volume.countedBlocks !== null) {
      lines.push(`note: device ${volume.devId} counted ${volume.countedBlocks} mapped blocks, and ${volume.mappedBlocks} were found`);
    }
  }
  if (report.skippedDevices.length > 0) lines.push(`skipped devices marked deleted: ${report.skippedDevices.join(", ")}`);
  if (report.replacedOwner !== null) {
    lines.push(`the data file was claimed by ${report.replacedOwner}; it belongs to ${metaPath} now, and the old one is refused`);
  }
  return lines.join("\n") + "\n";
}
