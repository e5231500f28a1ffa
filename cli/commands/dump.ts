// thinp dump: the pool's mappings as thin-provisioning-tools XML, for thin_restore,
// thin_check, or moving the pool to Linux dm-thin; at rest, or live through a running server.

import type { Command } from "commander";
import { rm } from "node:fs/promises";
import { once } from "node:events";
import type { Writable } from "node:stream";
import { dmThinXml, type DumpedDevice } from "../../src/thin/dm-thin-dump.js";
import { addPoolOption, type PoolOptions } from "../options.js";
import { resolvePoolPath } from "../pool-session.js";
import { servedDump } from "../../src/control/history-client.js";
import { historySession } from "./history-session.js";
import { createOutputFile, onUserFile } from "../user-files.js";

export function registerDumpCommand(program: Command): void {
  addPoolOption(
    program
      .command("dump")
      .description("print the pool's mappings as thin_dump XML (for thin_restore and thin_check)")
      .option("--output <file>", "write the XML to a file instead of stdout"),
  ).action(dump);
}

async function dump(options: PoolOptions & { output?: string }): Promise<void> {
  const metaPath = resolvePoolPath(options.pool);
  const devices: DumpedDevice[] = [];
  const output = options.output;
  const file = output === undefined ? null : await createOutputFile(output, false);
  try {
    const writeAll = async (xml: AsyncIterable<string>) => {
      const sink: Writable = file ? file.createWriteStream() : process.stdout;
      const write = async (text: string) => {
        if (!sink.write(text)) await once(sink, "drain");
      };
      for await (const text of xml) {
        await (output === undefined ? write(text) : onUserFile(output, "output file", () => write(text)));
      }
      if (sink !== process.stdout) {
        sink.end();
        await once(sink, "finish");
      }
    };
    // While served, the server holds every volume for the dump's length and reads the holds.
    await historySession(
      metaPath,
      "read",
      (pool) => writeAll(dmThinXml(pool, (device) => devices.push(device))),
      (server) => writeAll(servedDump(server, (device) => devices.push(device))),
    );
  } catch (error) {
    // A failed dump leaves no partial file that could be mistaken for a whole one.
    if (output !== undefined) await rm(output, { force: true });
    throw error;
  } finally {
    await file?.close().catch(() => undefined);
  }
  // dm-thin keeps no names or sizes: say which device is which, as a table line for each.
  for (const { devId, name, sizeBytes } of devices) {
    process.stderr.write(
      `dev_id ${devId} is '${name}': dmsetup create ${name} --table "0 ${sizeBytes / 512} thin /dev/mapper/POOL ${devId}"\n`,
    );
  }
}
