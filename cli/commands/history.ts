// Commands about what changed between volumes and moving it to another pool: diff, send,
// receive (formats/send-stream.md).

import type { Command } from "commander";
import type { DiffRange } from "../../src/thin/api.js";
import { receiveStream, type ReceiveSummary } from "../../src/thin/receive.js";
import { PoolReceiveTarget, abandonReceive, interruptedReceive } from "../../src/thin/receive-target.js";
import { decodeResumeToken } from "../../src/thin/resume-token.js";
import type { SendHeader } from "../../src/thin/send-stream.js";
import { encodeSendStream, openSendSource, type SendTotals } from "../../src/thin/send.js";
import { InvalidArgumentError, NoSuchVolumeError } from "../../src/errors.js";
import { runInterruptible, type Interruption } from "../interruption.js";
import { addPoolOption, type PoolOptions } from "../options.js";
import { resolvePoolPath } from "../pool-session.js";
import { startProgress } from "../progress.js";
import { formatSize } from "../size.js";
import { STDIO_PATH, openStreamReader, openStreamWriter, stdinReader, stdoutWriter, type StreamReader } from "../stream-io.js";
import { renderTable, type Column } from "../table.js";
import { historySession } from "./history-session.js";
import { servedDiff, servedReceive, servedReceiveAbort, servedReceiveToken, servedSend } from "../../src/control/history-client.js";

/** Bytes read from the input per step while receiving. */
const RECEIVE_CHUNK_BYTES = 1 << 20;

export function registerHistoryCommands(program: Command): void {
  addPoolOption(
    program
      .command("diff")
      .description("list the byte ranges where two volumes differ (a snapshot and a later one, a volume and its origin)")
      .argument("<from>", "the earlier volume")
      .argument("<to>", "the later volume")
      .option("--same", "also list the ranges both map to the same data (reads every node of both trees)")
      .option("--json", "print machine-readable JSON"),
  ).action(diffVolumes);

  addPoolOption(
    program
      .command("send")
      .description("write a volume as a stream that 'thinp receive' reads: whole, or only what changed since a snapshot")
      .argument("<volume>", "the volume (typically a snapshot) to send")
      .option("--from <snapshot>", "send only the blocks that differ from this volume, which the receiver holds")
      .option("--output <file>", "write the stream here instead of standard output")
      .option("--resume-token <token>", "go on from where an interrupted receive stopped ('thinp receive <name> --token' prints it)")
      .option("--json", "print a summary as JSON (to stderr when the stream goes to standard output)"),
  ).action(sendVolume);

  addPoolOption(
    program
      .command("receive")
      .description("read a stream from 'thinp send' into a new volume; an incremental stream needs its base here, unchanged")
      .argument("<name>", "name of the new volume")
      .option("--input <file>", "read the stream from here instead of standard input")
      .option("--resumable", "if the stream is cut, keep what came and print a token to resume with (else nothing is kept)")
      .option("--resume", "go on with a receive an earlier --resumable one left, from a stream 'thinp send --resume-token' wrote")
      .option("--token", "print the resume token of an interrupted receive of <name>, and exit")
      .option("--abort", "drop what an interrupted receive of <name> kept, and exit")
      .option("--json", "print a summary as JSON"),
  ).action(receiveVolume);
}

// ---- diff --------------------------------------------------------------------------------

interface DiffOptions extends PoolOptions {
  same?: boolean;
  json?: boolean;
}

async function diffVolumes(from: string, to: string, options: DiffOptions): Promise<void> {
  const ranges: DiffRange[] = [];
  const same = options.same === true;
  const collect = async (found: AsyncIterable<DiffRange>) => {
    for await (const range of found) ranges.push(range);
  };
  await historySession(
    resolvePoolPath(options.pool),
    "read",
    (pool) => collect(pool.diff(from, to, { includeSame: same })),
    (server) => collect(servedDiff(server, from, to, same)),
  );
  if (options.json) {
    process.stdout.write(`${JSON.stringify({ from, to, blockBytes: 65536, ranges }, null, 2)}\n`);
    return;
  }
  if (ranges.length === 0) {
    process.stdout.write(`'${from}' and '${to}' map every block alike\n`);
    return;
  }
  const columns: Column[] = [
    { header: "KIND", align: "left" },
    { header: "OFFSET", align: "right" },
    { header: "LENGTH", align: "right" },
    { header: "SIZE", align: "right" },
  ];
  const rows = ranges.map((range) => [range.kind, String(range.offset), String(range.length), formatSize(range.length)]);
  process.stdout.write(renderTable(columns, rows));
}

// ---- send --------------------------------------------------------------------------------

interface SendCliOptions extends PoolOptions {
  from?: string;
  output?: string;
  resumeToken?: string;
  json?: boolean;
}

async function sendVolume(name: string, options: SendCliOptions): Promise<void> {
  const resume = options.resumeToken === undefined ? undefined : decodeResumeToken(options.resumeToken);
  const toStdout = options.output === undefined || options.output === STDIO_PATH;
  const started = performance.now();
  const totals: SendTotals = { bytes: 0, dataBlocks: 0, unmappedBlocks: 0, records: 0 };
  const write = async (chunks: AsyncIterable<Buffer>, interruption: Interruption) => {
    const writer = toStdout ? await stdoutWriter() : await openStreamWriter(options.output!, interruption);
    const progress = startProgress(`send ${name}`, null);
    try {
      for await (const chunk of chunks) {
        interruption.check();
        await writer.write(chunk, interruption);
        progress.advance(chunk.length);
      }
      await writer.finish();
    } catch (failure) {
      writer.abandon();
      throw failure;
    } finally {
      progress.stop();
    }
  };
  await runInterruptible(
    "send",
    (interruption) =>
      historySession(
        resolvePoolPath(options.pool),
        "write",
        async (pool) => {
          const source = await openSendSource(pool, name, { from: options.from, resume });
          try {
            await write(encodeSendStream(source, totals), interruption);
          } finally {
            await source.close();
          }
        },
        // The server seals and holds the volumes, and makes the stream from the holds.
        (server) => write(servedSend(server, name, { from: options.from, resumeToken: options.resumeToken, totals }), interruption),
      ),
    () => "the stream is incomplete, and a receiver will refuse it",
  );
  const seconds = (performance.now() - started) / 1000;
  const summary = { volume: name, from: options.from ?? null, ...totals, seconds: Number(seconds.toFixed(3)) };
  const out = toStdout ? process.stderr : process.stdout;
  if (options.json) out.write(`${JSON.stringify(summary)}\n`);
  else if (!toStdout) {
    out.write(
      `sent ${name}${options.from ? ` (changes since ${options.from})` : ""} to ${options.output}: ${formatSize(totals.bytes)}, ` +
        `${totals.dataBlocks} blocks of data, ${totals.unmappedBlocks} unmapped\n`,
    );
  }
}

// ---- receive -----------------------------------------------------------------------------

interface ReceiveCliOptions extends PoolOptions {
  input?: string;
  resumable?: boolean;
  resume?: boolean;
  token?: boolean;
  abort?: boolean;
  json?: boolean;
}

async function receiveVolume(name: string, options: ReceiveCliOptions): Promise<void> {
  const metaPath = resolvePoolPath(options.pool);
  if (options.token || options.abort) {
    if (options.token && options.abort) throw new InvalidArgumentError("--token and --abort do not go together: give one");
    const report = async (kept: { token: string } | boolean | null) => {
      if (options.abort) {
        if (kept !== true) throw noInterruptedReceive(name);
        process.stdout.write(`dropped the interrupted receive of ${name}\n`);
        return;
      }
      if (kept === null || typeof kept === "boolean") throw noInterruptedReceive(name);
      process.stdout.write(`${kept.token}\n`);
    };
    await historySession(
      metaPath,
      options.abort ? "write" : "read",
      async (pool) => report(options.abort ? await abandonReceive(pool, name) : await interruptedReceive(pool, name)),
      async (server) => {
        if (options.abort) return report(await servedReceiveAbort(server, name));
        const token = await servedReceiveToken(server, name);
        return report(token === null ? null : { token });
      },
    );
    return;
  }
  const started = performance.now();
  let result: (ReceiveSummary & { header: SendHeader }) | null = null;
  let token: string | null = null;
  const resumable = options.resumable === true;
  const openInput = (interruption: Interruption) =>
    options.input === undefined || options.input === STDIO_PATH ? stdinReader() : openStreamReader(options.input, interruption);
  await runInterruptible(
    "receive",
    (interruption) =>
      historySession(
        metaPath,
        "write",
        async (pool) => {
          const reader = await openInput(interruption);
          const target = new PoolReceiveTarget(pool, name, { resumable, resume: options.resume === true });
          const progress = startProgress(`receive ${name}`, null);
          let counted = 0;
          try {
            result = await receiveStream(chunksOf(reader, interruption), target, (received) => {
              progress.advance(received.bytes - counted);
              counted = received.bytes;
            });
          } catch (failure) {
            // A resumable receive has committed what came already; the failure is what to report.
            token = target.resumeToken;
            throw explainReceiveFailure(failure, name, token);
          } finally {
            progress.stop();
            await reader.close();
          }
        },
        // The server applies the stream to its pool, and exports the volume once it is published.
        async (server) => {
          const reader = await openInput(interruption);
          const progress = startProgress(`receive ${name}`, null);
          let counted = 0;
          try {
            result = await servedReceive(
              server,
              name,
              { resumable, resume: options.resume === true },
              chunksOf(reader, interruption),
              (sent) => {
                progress.advance(sent - counted);
                counted = sent;
              },
            );
          } catch (failure) {
            token = resumable ? await servedReceiveToken(server, name).catch(() => null) : null;
            throw explainReceiveFailure(failure, name, token);
          } finally {
            progress.stop();
            await reader.close();
          }
        },
      ),
    () =>
      options.resumable
        ? `what came is kept; go on with: thinp send ... --resume-token $(thinp receive ${name} --token) | thinp receive ${name} --resume`
        : `nothing was received: the pool is as it was`,
  );
  const done = result as (ReceiveSummary & { header: SendHeader }) | null;
  if (done === null) return;
  const seconds = (performance.now() - started) / 1000;
  if (options.json) {
    process.stdout.write(
      `${JSON.stringify({
        volume: name,
        uuid: done.header.volume.uuid,
        incremental: done.incremental,
        bytes: done.bytes,
        dataBlocks: done.dataBlocks,
        unmappedBlocks: done.unmappedBlocks,
        records: done.records,
        resumedFromBlock: done.resumedFrom,
        seconds: Number(seconds.toFixed(3)),
      })}\n`,
    );
    return;
  }
  process.stdout.write(
    `received ${name}${done.incremental ? " (incremental)" : ""}: ${formatSize(done.bytes)}, ` +
      `${done.dataBlocks} blocks of data, ${done.unmappedBlocks} unmapped\n`,
  );
}

function noInterruptedReceive(name: string): NoSuchVolumeError {
  const error = new NoSuchVolumeError(name);
  error.message = `no interrupted receive of '${name}' is kept in this pool`;
  return error;
}

/** The failure, with where a resumable receive stands added to its message. */
function explainReceiveFailure(failure: unknown, name: string, token: string | null): unknown {
  if (token === null || !(failure instanceof Error)) return failure;
  failure.message +=
    `; what came is kept: go on with 'thinp send <volume> [--from <base>] --resume-token ${token} | thinp receive ${name} --resume', ` +
    `or drop it with 'thinp receive ${name} --abort'`;
  return failure;
}

async function* chunksOf(reader: StreamReader, interruption: Interruption): AsyncGenerator<Buffer> {
  for (;;) {
    interruption.check();
    const chunk = Buffer.allocUnsafe(RECEIVE_CHUNK_BYTES);
    const filled = await reader.fill(chunk, interruption);
    if (filled === 0) return;
    yield chunk.subarray(0, filled);
    if (filled < chunk.length) return;
  }
}
