// The thinp command line: every command, its arguments and its options.

import { Command } from "commander";
import { registerDumpCommand } from "./commands/dump.js";
import { registerPoolCommands } from "./commands/pool.js";
import { registerRepairCommand } from "./commands/repair.js";
import { registerServeCommands } from "./commands/serve.js";
import { registerTransferCommands } from "./commands/transfer.js";
import { registerVolumeCommands } from "./commands/volume.js";

export function buildProgram(version: string): Command {
  const program = new Command("thinp")
    .description("thin-provisioned volumes and snapshots in a pair of files")
    .version(version)
    // Usage errors are thrown back to main(), which owns every exit status.
    .exitOverride()
    .configureOutput({
      outputError: (message, write) => write(message.replace(/^error: /, "thinp: ")),
    })
    .showHelpAfterError("(run 'thinp help' or 'thinp <command> --help' for usage)");
  registerPoolCommands(program);
  registerVolumeCommands(program);
  registerTransferCommands(program);
  registerServeCommands(program);
  registerDumpCommand(program);
  registerRepairCommand(program);
  return program;
}
