// The option every command that opens an existing pool shares.

import type { Command } from "commander";
import { POOL_ENV_VAR, POOL_PATH_DEFAULT } from "./pool-session.js";

export interface PoolOptions {
  pool?: string;
}

export function addPoolOption(command: Command): Command {
  return command.option("--pool <meta>", `the pool's metadata file (default: $${POOL_ENV_VAR}, else ./${POOL_PATH_DEFAULT})`);
}
