// systemd's socket activation for `thinp serve`, as sd_listen_fds(3) reads it: the service
// manager binds the listening sockets (the .socket unit's ListenStream=), and starts the
// server with them open from descriptor 3 on, their count in LISTEN_FDS and the pid they
// are meant for in LISTEN_PID.

import { InvalidArgumentError } from "../src/errors.js";

/** SD_LISTEN_FDS_START: the first descriptor passed. */
export const LISTEN_FDS_START = 3;
/** More listening sockets than any unit of ours declares; a larger count is a mistake, not a plan. */
export const LISTEN_FDS_MAX = 64;

const ACTIVATION_VARIABLES = ["LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"] as const;

/**
 * The descriptors passed to this process, or null when it was not socket-activated. Like
 * sd_listen_fds(unset_environment=1) it removes the variables, so that no child process
 * takes sockets meant for this one. LISTEN_FDNAMES is not needed: every socket serves NBD.
 */
export function takeActivatedSockets(env: NodeJS.ProcessEnv, pid: number): number[] | null {
  const listenPid = env.LISTEN_PID;
  const listenFds = env.LISTEN_FDS;
  for (const name of ACTIVATION_VARIABLES) delete env[name];
  if (listenPid === undefined || listenFds === undefined) return null;
  // Variables a parent left for another process (its own LISTEN_PID) are not ours to use.
  if (!/^\d+$/.test(listenPid) || Number(listenPid) !== pid) return null;
  if (!/^\d+$/.test(listenFds) || Number(listenFds) > LISTEN_FDS_MAX) {
    throw new InvalidArgumentError(`LISTEN_FDS=${listenFds}: expected a count of passed sockets from 0 to ${LISTEN_FDS_MAX}`);
  }
  const count = Number(listenFds);
  if (count === 0) return null;
  return Array.from({ length: count }, (_, index) => LISTEN_FDS_START + index);
}

/**
 * Activation says where to listen; --listen or --socket as well would be two answers, so
 * they are refused, as nbdkit refuses -p and -U under socket activation.
 */
export class ActivationConflictError extends InvalidArgumentError {
  constructor(option: string) {
    super(
      `${option} cannot be used with socket activation (LISTEN_FDS): the service manager passes the listening sockets; ` +
        `set them with ListenStream= in the .socket unit, or start thinp serve without LISTEN_FDS`,
    );
  }
}
