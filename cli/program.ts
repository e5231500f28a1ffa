// The thinp command line: every command, its arguments and its options.

import { Command } from "commander";
import { registerDumpCommand } from "./commands/dump.js";
import { registerHistoryCommands } from "./commands/history.js";
import { registerPoolCommands } from "./commands/pool.js";
import { registerRepairCommand } from "./commands/repair.js";
import { registerRestoreCommand } from "./commands/restore.js";
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
  registerHistoryCommands(program);
  registerServeCommands(program);
  registerDumpCommand(program);
  registerRepairCommand(program);
  registerRestoreCommand(program);
  registerHelpCommand(program);
  return program;
}

/**
 * `thinp help [command]`. Commander's own help command answers an unknown name with
 * the whole program's help and no word of what was wrong; this one says the name is
 * not a command and lists those that are.
 */
function registerHelpCommand(program: Command): void {
  program
    .command("help")
    .description("display help for command")
    .argument("[command]", "the command to describe")
    .action((name: string | undefined) => {
      if (name === undefined) program.help();
      const named = program.commands.find((command) => command.name() === name || command.aliases().includes(name!));
      if (named === undefined) {
        const names = program.commands.map((command) => command.name()).join(", ");
        // "error: " becomes "thinp: " in outputError, like commander's own messages.
        program.error(`error: unknown command '${name}'; the commands are: ${names}`, { code: "commander.unknownCommand" });
      }
      named!.help();
    });
}
