#!/usr/bin/env node
// Entry point: run one command and turn its outcome into an exit status.
// Operating errors print one line naming the fact; anything else is a bug and
// prints its stack.

import { CommanderError } from "commander";
import { readFileSync } from "node:fs";
import { ThinpError } from "../src/errors.js";
import { EXIT_INTERNAL, EXIT_OK, EXIT_USAGE, exitCodeFor } from "./exit-codes.js";
import { explainMissingPool } from "./pool-session.js";
import { buildProgram } from "./program.js";

function packageVersion(): string {
  try {
    // dist/cli/main.js -> package.json at the repository root.
    const packageText = readFileSync(new URL("../../package.json", import.meta.url), "utf8");
    return (JSON.parse(packageText) as { version?: string }).version ?? "unknown";
  } catch {
    return "unknown";
  }
}

async function main(argv: readonly string[]): Promise<number> {
  try {
    await buildProgram(packageVersion()).parseAsync([...argv], { from: "user" });
    return EXIT_OK;
  } catch (thrown) {
    const failure = explainMissingPool(thrown);
    if (failure instanceof CommanderError) {
      // Commander has already printed the message or the help text.
      return failure.exitCode === 0 ? EXIT_OK : EXIT_USAGE;
    }
    if (failure instanceof ThinpError) {
      process.stderr.write(`thinp: ${failure.message}\n`);
      return exitCodeFor(failure.code);
    }
    const detail = failure instanceof Error ? (failure.stack ?? failure.message) : String(failure);
    process.stderr.write(`thinp: internal error (this is a bug in thinp):\n${detail}\n`);
    return EXIT_INTERNAL;
  }
}

process.exitCode = await main(process.argv.slice(2));
