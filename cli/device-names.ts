// How `thinp restore` names the volumes of dm-thin devices, which have only numbers:
// `devN` by default, a `--names` file of `dev_id name [size]` lines, or Docker's
// devicemapper metadata folder (one JSON file per device, named by its hash; `base` for the
// base device), which also gives sizes and marks deleted devices.

import { readFile, readdir } from "node:fs/promises";
import path from "node:path";
import { FileMissingError, InvalidArgumentError, IoError } from "../src/errors.js";
import type { DeviceNaming } from "../src/thin/adopt/restore.js";
import { validateVolumeName } from "../src/thin/names.js";
import { parseSize } from "./size.js";

export async function namesFileNaming(filePath: string): Promise<DeviceNaming> {
  const text = await readFile(filePath, "utf8").catch((error: NodeJS.ErrnoException) => {
    throw error.code === "ENOENT" ? new FileMissingError(filePath, "names file") : new IoError(filePath, error);
  });
  const named = new Map<number, { name: string; sizeBytes: number | null }>();
  for (const [index, raw] of text.split("\n").entries()) {
    const line = raw.replace(/#.*/, "").trim();
    if (line === "") continue;
    const where = `${filePath}, line ${index + 1}`;
    const fields = line.split(/\s+/);
    const [id, name, size] = fields;
    if (fields.length > 3 || id === undefined || name === undefined || !/^\d+$/.test(id)) {
      throw new InvalidArgumentError(`${where}: '${raw.trim()}' is not 'dev_id name [size]'`);
    }
    validateVolumeName(name);
    const devId = Number(id);
    if (named.has(devId)) throw new InvalidArgumentError(`${where}: device ${devId} is named twice`);
    named.set(devId, { name, sizeBytes: size === undefined ? null : parseSize(size) });
  }
  return (devId) => named.get(devId) ?? { name: `dev${devId}`, sizeBytes: null };
}

interface DockerDevice {
  device_id?: unknown;
  size?: unknown;
  deleted?: unknown;
}

/** Docker's per-device JSON files: `<hash>` (or `base`) holding device_id, size, transaction_id, initialized, deleted. */
export async function dockerMetadataNaming(folder: string): Promise<DeviceNaming> {
  const entries = await readdir(folder).catch((error: NodeJS.ErrnoException) => {
    throw error.code === "ENOENT" ? new FileMissingError(folder, "Docker metadata folder") : new IoError(folder, error);
  });
  const named = new Map<number, { name: string; sizeBytes: number | null } | null>();
  for (const entry of entries.sort()) {
    // Docker keeps its own bookkeeping beside the devices' files.
    if (entry.startsWith(".") || entry === "deviceset-metadata" || entry === "transaction-metadata") continue;
    const filePath = path.join(folder, entry);
    let device: DockerDevice;
    try {
      device = JSON.parse(await readFile(filePath, "utf8")) as DockerDevice;
    } catch (error) {
      if (error instanceof SyntaxError) throw new InvalidArgumentError(`${filePath} is not JSON: ${error.message}`);
      throw new IoError(filePath, error);
    }
    const id = device.device_id;
    const size = device.size;
    if (
      typeof id !== "number" ||
      !Number.isSafeInteger(id) ||
      id < 0 ||
      typeof size !== "number" ||
      !Number.isSafeInteger(size) ||
      size <= 0
    ) {
      throw new InvalidArgumentError(`${filePath} has no whole device_id and size: it is not one of Docker's device files`);
    }
    if (named.has(id)) throw new InvalidArgumentError(`${filePath}: device ${id} has two files`);
    validateVolumeName(entry);
    named.set(id, device.deleted === true ? null : { name: entry, sizeBytes: Math.ceil(size / 512) * 512 });
  }
  return (devId) => {
    const found = named.get(devId);
    if (found === undefined) return { name: `dev${devId}`, sizeBytes: null };
    return found;
  };
}
