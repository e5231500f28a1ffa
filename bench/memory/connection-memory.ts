// What a thinp server's memory does when many clients send large writes at once. The
// server's in-flight budget (SERVER_INFLIGHT_BYTES_MAX) should hold its RSS to its baseline
// plus the budget plus each connection's read buffers (formats/nbd-protocol.md, "Memory"),
// plus what the JavaScript runtime keeps beyond live buffers, by slowing the clients through
// TCP rather than buffering what they send.
//
// A child process serves a sparse pool (bench/memory/budget-server.ts: the pool service
// `thinp serve` runs, default limits). This process opens the connections, has each queue
// its WRITEs at once from one shared buffer, and samples the child's VmRSS from
// /proc/PID/status while they run (VmHWM at the end), beside the child's own reports of its
// budget and process.memoryUsage(). Writes wrap around within the volume, so the disk holds
// at most the volume's size whatever is sent; the run ends when every write is answered or
// after --seconds, whichever is first, and the scratch files are deleted. Prints one
// markdown section; exits 1 if the peak RSS passed the bound.
//
//   node dist/bench/memory/connection-memory.js [--connections 64] [--requests 16]
//     [--request-mib 32] [--seconds 20] [--volume-gib 2] [--thinp-dist DIR]
//
// --thinp-dist serves with another build's dist/ (an older commit's, say), to compare.

import { fork, type ChildProcess } from "node:child_process";
import { readFileSync, rmSync } from "node:fs";
import { rm } from "node:fs/promises";
import { availableParallelism, cpus, loadavg, release, totalmem } from "node:os";
import { dirname, join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { assert } from "../../src/io/assert.js";
import {
  DEFAULT_LIMITS,
  READ_AHEAD_BYTES_MAX,
  REQUEST_BYTES_MAX,
  SERVER_INFLIGHT_BYTES_MAX,
  SOCKET_READ_CHUNK_BYTES_MAX,
  serverBufferBytesMax,
} from "../../src/nbd/limits.js";
import { createBenchDir } from "../nbd/bench-dir.js";
import { freePort } from "../nbd/server-process.js";
import type { BudgetServerMessage, BudgetServerSetup, InflightReport } from "./budget-server.js";
import { NbdWriter } from "./nbd-writer.js";

const KiB = 1024;
const MiB = 1024 * KiB;
const GiB = 1024 * MiB;
const HOST = "127.0.0.1";
const SAMPLE_INTERVAL_MS = 50;
const SERVER_START_TIMEOUT_MS = 60_000;
const SERVER_STOP_TIMEOUT_MS = 60_000;
/** Settling time after the connections open, before the baseline is read. */
const SETTLE_MS = 1_000;
/**
 * What the runtime may hold beyond the live buffers the budget counts: socket reads already
 * copied into their payloads but not yet collected, the JavaScript heap growing under load,
 * and the allocator's free lists. The allowance formats/nbd-protocol.md states.
 */
export const RUNTIME_SLACK_BYTES = 64 * MiB;

interface Options {
  connections: number;
  requests: number;
  requestBytes: number;
  seconds: number;
  volumeBytes: number;
  thinpDist?: string;
}

function parseOptions(): Options {
  const { values } = parseArgs({
    options: {
      connections: { type: "string", default: "64" },
      requests: { type: "string", default: "16" },
      "request-mib": { type: "string", default: "32" },
      seconds: { type: "string", default: "20" },
      "volume-gib": { type: "string", default: "2" },
      "thinp-dist": { type: "string" },
    },
  });
  const whole = (name: string, text: string) => {
    const value = Number(text);
    if (!Number.isSafeInteger(value) || value <= 0) throw new Error(`--${name} takes a positive whole number; got '${text}'`);
    return value;
  };
  const options: Options = {
    connections: whole("connections", values.connections),
    requests: whole("requests", values.requests),
    requestBytes: whole("request-mib", values["request-mib"]) * MiB,
    seconds: whole("seconds", values.seconds),
    volumeBytes: whole("volume-gib", values["volume-gib"]) * GiB,
    thinpDist: values["thinp-dist"],
  };
  if (options.requestBytes > REQUEST_BYTES_MAX)
    throw new Error(`--request-mib is at most ${REQUEST_BYTES_MAX / MiB}, the largest WRITE thinp takes`);
  if (options.volumeBytes % options.requestBytes !== 0) throw new Error("the volume must be a whole number of requests");
  return options;
}

function progress(message: string): void {
  process.stderr.write(`[bench:memory] ${message}\n`);
}

/** VmRSS and VmHWM of a process, in bytes; null once it has gone. */
function memoryOf(pid: number): { rssBytes: number; hwmBytes: number } | null {
  let status: string;
  try {
    status = readFileSync(`/proc/${pid}/status`, "utf8");
  } catch {
    return null;
  }
  const field = (name: string) => {
    const match = new RegExp(`^${name}:\\s+(\\d+) kB$`, "m").exec(status);
    assert(match !== null, `/proc/${pid}/status has ${name}`);
    return Number(match[1]) * KiB;
  };
  return { rssBytes: field("VmRSS"), hwmBytes: field("VmHWM") };
}

const mib = (bytes: number) => `${(bytes / MiB).toFixed(0)} MiB`;
const gib = (bytes: number) => `${(bytes / GiB).toFixed(2)} GiB`;

/** The server process, and the most its reports have shown since the last reset. */
class ServerChild {
  readonly exited: Promise<number | null>;
  private readyPid: number | null = null;
  private wakeReady: (() => void) | null = null;
  latest: { inflight: InflightReport | null; memory: NodeJS.MemoryUsage } | null = null;
  peakArrayBufferBytes = 0;
  peakHeapUsedBytes = 0;

  constructor(readonly process: ChildProcess) {
    process.on("message", (message: BudgetServerMessage) => {
      if (message.kind === "ready") {
        this.readyPid = message.pid;
        this.wakeReady?.();
        return;
      }
      this.latest = { inflight: message.inflight, memory: message.memory };
      this.peakArrayBufferBytes = Math.max(this.peakArrayBufferBytes, message.memory.arrayBuffers);
      this.peakHeapUsedBytes = Math.max(this.peakHeapUsedBytes, message.memory.heapUsed);
    });
    this.exited = new Promise((resolve) =>
      process.once("exit", (code) => {
        this.wakeReady?.();
        resolve(code);
      }),
    );
  }

  async ready(timeoutMs: number): Promise<number> {
    if (this.readyPid === null) {
      await Promise.race([new Promise<void>((resolve) => (this.wakeReady = resolve)), sleep(timeoutMs)]);
    }
    if (this.readyPid === null) throw new Error(`the server was not ready within ${timeoutMs} ms`);
    return this.readyPid;
  }

  resetPeaks(): void {
    this.peakArrayBufferBytes = this.latest?.memory.arrayBuffers ?? 0;
    this.peakHeapUsedBytes = this.latest?.memory.heapUsed ?? 0;
  }

  /** SIGTERM (the server drains and commits), then SIGKILL if it takes too long; its exit code. */
  async stop(): Promise<number | null> {
    this.process.kill("SIGTERM");
    const timer = setTimeout(() => this.process.kill("SIGKILL"), SERVER_STOP_TIMEOUT_MS);
    const code = await this.exited;
    clearTimeout(timer);
    return code;
  }
}

interface Outcome {
  options: Options;
  started: Date;
  benchDir: string;
  loadBefore: string;
  atReadyRssBytes: number;
  baselineRssBytes: number;
  baselineArrayBufferBytes: number;
  peakRssBytes: number;
  hwmBytes: number;
  peakArrayBufferBytes: number;
  peakHeapUsedBytes: number;
  samples: number;
  elapsedSeconds: number;
  finished: boolean;
  replied: number;
  errors: number;
  acknowledgedBytes: number;
  connectionsDone: number;
  inflight: InflightReport | null;
}

async function run(options: Options, benchDir: string, started: Date, onChild: (child: ServerChild | null) => void): Promise<Outcome> {
  const loadBefore = loadavg()
    .map((load) => load.toFixed(2))
    .join(", ");
  const port = await freePort();
  const setup: BudgetServerSetup = {
    dataPath: join(benchDir, "data.img"),
    metaPath: join(benchDir, "meta.img"),
    // Room for the volume and more: without snapshots every overwrite lands in place.
    poolBytes: 2 * options.volumeBytes,
    volumeName: "flood",
    volumeBytes: options.volumeBytes,
    port,
    thinpDist: options.thinpDist,
  };
  const serverScript = join(dirname(fileURLToPath(import.meta.url)), "budget-server.js");
  const child = new ServerChild(fork(serverScript, [JSON.stringify(setup)], { stdio: ["ignore", "inherit", "inherit", "ipc"] }));
  onChild(child);
  const pid = await child.ready(SERVER_START_TIMEOUT_MS);
  const atReady = memoryOf(pid);
  assert(atReady !== null, "the server is running");
  progress(`server pid ${pid} on port ${port}, bench dir ${benchDir}`);

  const writers = await Promise.all(Array.from({ length: options.connections }, () => NbdWriter.connect(HOST, port, setup.volumeName)));
  await sleep(SETTLE_MS);
  const baseline = memoryOf(pid);
  assert(baseline !== null, "the server is running");
  const baselineArrayBufferBytes = child.latest?.memory.arrayBuffers ?? 0;
  child.resetPeaks();
  progress(`${writers.length} connections open; server RSS ${mib(baseline.rssBytes)}; writing`);

  const payload = Buffer.alloc(options.requestBytes, 0xa5);
  const slots = options.volumeBytes / options.requestBytes;
  const t0 = performance.now();
  let peakRssBytes = baseline.rssBytes;
  let samples = 0;
  const sampler = setInterval(() => {
    const now = memoryOf(pid);
    if (now === null) return;
    samples++;
    peakRssBytes = Math.max(peakRssBytes, now.rssBytes);
  }, SAMPLE_INTERVAL_MS);
  // Write i of connection c goes to slot i × connections + c, wrapped: at any moment the
  // connections write different places, and nothing lands past the volume's end.
  writers.forEach((writer, c) =>
    writer.sendWrites(
      Array.from({ length: options.requests }, (_, i) => ((i * options.connections + c) % slots) * options.requestBytes),
      payload,
    ),
  );
  const allDone = Promise.all(writers.map((writer) => writer.allAnswered())).then(() => true);
  const finished = await Promise.race([allDone, sleep(options.seconds * 1000).then(() => false)]);
  const elapsedSeconds = (performance.now() - t0) / 1000;
  clearInterval(sampler);
  const atEnd = memoryOf(pid);
  assert(atEnd !== null, "the server is running");
  peakRssBytes = Math.max(peakRssBytes, atEnd.rssBytes);
  const inflight = child.latest?.inflight ?? null;
  const peakArrayBufferBytes = child.peakArrayBufferBytes;
  const peakHeapUsedBytes = child.peakHeapUsedBytes;

  const replied = writers.reduce((sum, writer) => sum + writer.repliedCount, 0);
  const errors = writers.reduce((sum, writer) => sum + writer.errorCount, 0);
  const acknowledgedBytes = writers.reduce((sum, writer) => sum + writer.acknowledgedBytes, 0);
  const connectionsDone = writers.filter((writer) => writer.repliedCount === options.requests).length;
  for (const writer of writers) {
    if (finished) writer.disconnect();
    else writer.destroy();
  }
  await Promise.all(writers.map((writer) => writer.closed));
  progress(`stopping the server after ${elapsedSeconds.toFixed(1)} s`);
  const exitCode = await child.stop();
  onChild(null);
  if (exitCode !== 0) throw new Error(`the server exited with ${exitCode ?? "a signal"} when stopped`);

  return {
    options,
    started,
    benchDir,
    loadBefore,
    atReadyRssBytes: atReady.rssBytes,
    baselineRssBytes: baseline.rssBytes,
    baselineArrayBufferBytes,
    peakRssBytes,
    hwmBytes: atEnd.hwmBytes,
    peakArrayBufferBytes,
    peakHeapUsedBytes,
    samples,
    elapsedSeconds,
    finished,
    replied,
    errors,
    acknowledgedBytes,
    connectionsDone,
    inflight,
  };
}

function render(outcome: Outcome): { text: string; pass: boolean } {
  const { options, inflight } = outcome;
  // With clients that read their replies, the documents' sum is the budget plus each
  // connection's read-ahead and the socket read that crosses it.
  const readBuffersBytes = options.connections * (READ_AHEAD_BYTES_MAX + SOCKET_READ_CHUNK_BYTES_MAX);
  const documentedBytes = outcome.baselineRssBytes + SERVER_INFLIGHT_BYTES_MAX + readBuffersBytes;
  const boundBytes = documentedBytes + RUNTIME_SLACK_BYTES;
  const worstBytes = outcome.baselineRssBytes + serverBufferBytesMax({ ...DEFAULT_LIMITS, connectionsMax: options.connections });
  const pass = outcome.peakRssBytes <= boundBytes && outcome.errors === 0;
  const offeredBytes = options.connections * options.requests * options.requestBytes;
  const rows: [string, string][] = [
    ["server RSS when listening", mib(outcome.atReadyRssBytes)],
    [`baseline: server RSS with the ${options.connections} connections open, before any write`, mib(outcome.baselineRssBytes)],
    [`**peak VmRSS while writing** (${outcome.samples} samples, every ${SAMPLE_INTERVAL_MS} ms)`, `**${mib(outcome.peakRssBytes)}**`],
    ["VmHWM at the end (the kernel's own peak, start-up included)", mib(outcome.hwmBytes)],
    ["peak VmRSS − baseline", mib(outcome.peakRssBytes - outcome.baselineRssBytes)],
    ["`SERVER_INFLIGHT_BYTES_MAX`, the budget", mib(SERVER_INFLIGHT_BYTES_MAX)],
    [
      "the server's own count: the budget's high-water mark (`NbdServer.inflight.peakBytes`)",
      inflight === null ? "— (this build has no budget)" : mib(inflight.peakBytes),
    ],
    ["READs and WRITEs that waited for the budget", inflight === null ? "—" : inflight.waitedCount.toLocaleString("en-US")],
    [
      "peak `process.memoryUsage().arrayBuffers` (live and uncollected buffers; at baseline)",
      `${mib(outcome.peakArrayBufferBytes)} (${mib(outcome.baselineArrayBufferBytes)})`,
    ],
    ["peak JavaScript heap used", mib(outcome.peakHeapUsedBytes)],
    [`read buffers, ${options.connections} × (256 KiB read-ahead + 64 KiB socket read)`, mib(readBuffersBytes)],
    ["documented: baseline + budget + read buffers", mib(documentedBytes)],
    [`bound: documented + ${mib(RUNTIME_SLACK_BYTES)} runtime slack`, mib(boundBytes)],
    [`documented worst case for any ${options.connections} clients: baseline + \`serverBufferBytesMax\``, mib(worstBytes)],
  ];
  const rate = outcome.acknowledgedBytes / outcome.elapsedSeconds;
  const text = [
    "## Memory with many connections writing (bench/memory/connection-memory.ts)",
    "",
    `Command: \`node dist/bench/memory/connection-memory.js --connections ${options.connections} --requests ${options.requests} --request-mib ${options.requestBytes / MiB} --seconds ${options.seconds} --volume-gib ${options.volumeBytes / GiB}${options.thinpDist ? ` --thinp-dist ${options.thinpDist}` : ""}\``,
    "",
    `- date: ${outcome.started.toISOString()}; nproc ${availableParallelism()} (${cpus()[0]?.model ?? "unknown CPU"}), ${gib(totalmem())} RAM, Linux ${release()}, node ${process.version}; load average (1, 5, 15 min) at the start: ${outcome.loadBefore}`,
    `- server: a child process serving a ${gib(options.volumeBytes)} volume of a new sparse pool in ${outcome.benchDir} (deleted afterwards) with \`thinp serve\`'s pool service and default limits${options.thinpDist ? `, from the build in ${options.thinpDist}` : ""}`,
    `- load: ${options.connections} TCP connections on 127.0.0.1, each queueing ${options.requests} WRITEs of ${mib(options.requestBytes)} at once from one shared buffer: ${gib(offeredBytes)} offered, at offsets wrapping within the volume`,
    `- ran ${outcome.elapsedSeconds.toFixed(1)} s (${outcome.finished ? "every write answered" : `stopped at the ${options.seconds} s limit, the rest unsent or unanswered`}); ${outcome.replied.toLocaleString("en-US")} writes answered, ${outcome.errors} with an error; ${gib(outcome.acknowledgedBytes)} written (${mib(rate)}/s); ${outcome.connectionsDone} of ${options.connections} connections had all their writes answered`,
    "",
    "| measure | value |",
    "|---|---|",
    ...rows.map(([measure, value]) => `| ${measure} | ${value} |`),
    "",
    `Result: **${pass ? "PASS" : "FAIL"}**: peak VmRSS ${mib(outcome.peakRssBytes)} ${outcome.peakRssBytes <= boundBytes ? "≤" : ">"} bound ${mib(boundBytes)}${outcome.errors === 0 ? "" : `; ${outcome.errors} writes failed`}.`,
  ].join("\n");
  return { text, pass };
}

async function main(): Promise<void> {
  const options = parseOptions();
  const started = new Date();
  const benchDir = await createBenchDir();
  let child: ServerChild | null = null;
  for (const signal of ["SIGINT", "SIGTERM"] as const) {
    process.once(signal, () => {
      child?.process.kill("SIGKILL");
      rmSync(benchDir, { recursive: true, force: true });
      process.exit(130);
    });
  }
  try {
    const outcome = await run(options, benchDir, started, (current) => (child = current));
    const report = render(outcome);
    process.stdout.write(`${report.text}\n`);
    if (!report.pass) process.exitCode = 1;
  } finally {
    // A child of ours can only still be running if the run failed.
    (child as ServerChild | null)?.process.kill("SIGKILL");
    await rm(benchDir, { recursive: true, force: true });
  }
}

await main();
