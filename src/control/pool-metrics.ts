// Prometheus metrics for one served pool: what the NBD servers and the engine report
// through their observers, and the pool's space, read at each scrape. Every name starts
// `thinp_`; formats/metrics.md lists them. One private registry per service, so two pools
// served by one process (tests) never mix their counts.
//
// The data path pays for a counter increment and a histogram observation per request, no
// label lookup: the labelled children are found once per export and command and kept.

import { Counter, Gauge, Histogram, Registry } from "prom-client";
import { commandName, nbdErrnoName, type NbdObserver, type NbdRequestObserver } from "../nbd/index.js";
import { NBD_CMD_READ, NBD_CMD_WRITE } from "../nbd/protocol.js";
import type { PoolStatus } from "../thin/api.js";
import type { PoolObserver } from "../thin/pool-observer.js";

/** Seconds, from a cached read answered on the calling thread to a slow sync. */
const REQUEST_SECONDS_BUCKETS = [0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10];
const COMMIT_SECONDS_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];

/** One command on one export: the children its requests increment. */
interface CommandChildren {
  requests: Counter.Internal;
  bytes: Counter.Internal;
  /** Read or written bytes, for READ and WRITE; null for the other commands. */
  dataBytes: Counter.Internal | null;
  seconds: Histogram.Internal<"command">;
}

export class PoolMetrics {
  readonly registry = new Registry();
  readonly nbdObserver: NbdObserver;
  readonly poolObserver: PoolObserver;
  private readonly exports = new Map<string, Map<number, CommandChildren>>();

  /** `spaceWaiters`: writes held now for space (`serve --when-full=queue`). */
  constructor(status: () => PoolStatus, spaceWaiters: () => number = () => 0) {
    const registers = [this.registry];
    const requests = new Counter({
      name: "thinp_requests_total",
      help: "NBD requests answered, failed ones included",
      labelNames: ["command", "export"],
      registers,
    });
    const requestBytes = new Counter({
      name: "thinp_request_bytes_total",
      help: "Bytes covered by NBD requests that succeeded (a TRIM's or WRITE_ZEROES's range too)",
      labelNames: ["command", "export"],
      registers,
    });
    const readBytes = new Counter({
      name: "thinp_read_bytes_total",
      help: "Bytes read by NBD READ requests that succeeded",
      labelNames: ["export"],
      registers,
    });
    const writeBytes = new Counter({
      name: "thinp_write_bytes_total",
      help: "Bytes written by NBD WRITE requests that succeeded",
      labelNames: ["export"],
      registers,
    });
    const requestSeconds = new Histogram({
      name: "thinp_request_duration_seconds",
      help: "Time from an NBD request's header being read to its reply being queued",
      labelNames: ["command"],
      buckets: REQUEST_SECONDS_BUCKETS,
      registers,
    });
    const errors = new Counter({
      name: "thinp_request_errors_total",
      help: "NBD requests answered with an error, by command and NBD errno",
      labelNames: ["command", "errno"],
      registers,
    });
    const connections = new Gauge({ name: "thinp_connections", help: "NBD connections open, in any phase", registers });
    const connectionsTotal = new Counter({ name: "thinp_connections_total", help: "NBD connections accepted", registers });
    const commits = new Counter({ name: "thinp_commits_total", help: "Commits that made the pool's transaction durable", registers });
    const commitSeconds = new Histogram({
      name: "thinp_commit_duration_seconds",
      help: "Time a commit took, syncs included",
      buckets: COMMIT_SECONDS_BUCKETS,
      registers,
    });
    const copiedOnWrite = new Counter({
      name: "thinp_blocks_copied_on_write_total",
      help: "Data blocks shared with a snapshot whose old contents a partial write copied into a fresh block",
      registers,
    });
    new Gauge({
      name: "thinp_requests_waiting_for_space",
      help: "Writes held until the pool has space (serve --when-full=queue); 0 in error mode",
      registers,
      collect() {
        this.set(spaceWaiters());
      },
    });
    this.addSpaceGauges(status);

    const errorChildren = new Map<string, Counter.Internal>();
    const secondsChildren = new Map<number, Histogram.Internal<"command">>();
    const childrenFor = (exportName: string, command: number): CommandChildren => {
      let byCommand = this.exports.get(exportName);
      if (byCommand === undefined) this.exports.set(exportName, (byCommand = new Map()));
      let children = byCommand.get(command);
      if (children === undefined) {
        const name = commandName(command);
        let seconds = secondsChildren.get(command);
        if (seconds === undefined) secondsChildren.set(command, (seconds = requestSeconds.labels(name)));
        const dataBytes = command === NBD_CMD_READ ? readBytes : command === NBD_CMD_WRITE ? writeBytes : null;
        children = {
          requests: requests.labels(name, exportName),
          bytes: requestBytes.labels(name, exportName),
          dataBytes: dataBytes?.labels(exportName) ?? null,
          seconds,
        };
        byCommand.set(command, children);
      }
      return children;
    };
    const countError = (command: number, errno: number) => {
      const key = `${command}:${errno}`;
      let child = errorChildren.get(key);
      if (child === undefined) errorChildren.set(key, (child = errors.labels(commandName(command), nbdErrnoName(errno))));
      child.inc();
    };

    this.nbdObserver = {
      connectionOpened: () => {
        connections.inc();
        connectionsTotal.inc();
      },
      connectionClosed: () => connections.dec(),
      exportServed: (exportName): NbdRequestObserver => {
        // The commands a client uses are few; their children are kept per command here too,
        // so a request finds them by array index.
        const cached: (CommandChildren | undefined)[] = [];
        return {
          answered: (command, byteLength, errno, seconds) => {
            const children = (cached[command] ??= childrenFor(exportName, command));
            children.requests.inc();
            children.seconds.observe(seconds);
            if (errno !== 0) {
              countError(command, errno);
              return;
            }
            children.bytes.inc(byteLength);
            children.dataBytes?.inc(byteLength);
          },
        };
      },
    };
    this.poolObserver = {
      committed: (durationMs) => {
        commits.inc();
        commitSeconds.observe(durationMs / 1000);
      },
      copiedOnWrite: () => copiedOnWrite.inc(),
    };
  }

  /** Block counts read from pool.status() at each scrape; a count the pool cannot read (degraded) is left out. */
  private addSpaceGauges(status: () => PoolStatus): void {
    const space: [string, string, (current: PoolStatus) => number | null][] = [
      ["thinp_data_blocks_used", "Data blocks in use", (current) => current.dataBlocksUsed],
      ["thinp_data_blocks_total", "Data blocks in the pool", (current) => current.dataBlocksTotal],
      ["thinp_metadata_blocks_used", "Metadata blocks in use", (current) => current.metadataBlocksUsed],
      ["thinp_metadata_blocks_total", "Metadata blocks in the metadata file", (current) => current.metadataBlocksTotal],
      ["thinp_data_block_bytes", "Bytes in one data block", (current) => current.dataBlockBytes],
      ["thinp_metadata_block_bytes", "Bytes in one metadata block", (current) => current.metadataBlockBytes],
    ];
    for (const [name, help, read] of space) {
      new Gauge({
        name,
        help,
        registers: [this.registry],
        collect() {
          const value = read(status());
          if (value === null) this.reset();
          else this.set(value);
        },
      });
    }
  }
}
