// The CLI's side of diff, send, receive and dump on a served pool (live-history.ts): each
// a session that the client opens, pulls (or feeds) a page or chunk at a time, and ends,
// so the server's holds last exactly as long as the command.

import type { DiffRange } from "../thin/api.js";
import type { DumpedDevice } from "../thin/dm-thin-dump.js";
import type { SendTotals } from "../thin/send.js";
import type { ControlClient } from "./control-client.js";
import type { DiffReadReply, DumpReadReply, ReceiveEndReply, SendReadReply, SessionReply } from "./control-protocol.js";
import { CONTROL_READ_BYTES_MAX, CONTROL_RECEIVE_DATA_BYTES_MAX } from "./limits.js";

/** The ranges in which `to` differs from `from`, as Pool.diff yields them, read from the server's holds. */
export async function* servedDiff(server: ControlClient, from: string, to: string, same: boolean): AsyncGenerator<DiffRange> {
  const { id } = await server.call<SessionReply>({ op: "diff-begin", from, to, same });
  let done = false;
  try {
    while (!done) {
      const page = await server.call<DiffReadReply>({ op: "diff-read", id });
      done = page.done;
      yield* page.ranges;
    }
  } finally {
    if (!done) await endQuietly(server, id);
  }
}

export interface ServedSendOptions {
  from?: string;
  resumeToken?: string;
  /** Filled in once the stream is whole. */
  totals: SendTotals;
}

/**
 * The stream of a send the server makes from holds on the volumes. The next piece is asked
 * for while the caller writes this one, so the server reads while the output is written.
 */
export async function* servedSend(server: ControlClient, volume: string, options: ServedSendOptions): AsyncGenerator<Buffer> {
  const { id } = await server.call<SessionReply>({
    op: "send-begin",
    volume,
    from: options.from ?? null,
    resumeToken: options.resumeToken ?? null,
  });
  const read = () => server.call<SendReadReply>({ op: "send-read", id, maxBytes: CONTROL_READ_BYTES_MAX });
  let done = false;
  let next: Promise<SendReadReply> | null = read();
  try {
    while (next !== null) {
      const reply: SendReadReply = await next;
      next = null;
      done = reply.done;
      if (reply.totals !== null) Object.assign(options.totals, reply.totals);
      if (!done) next = read();
      if (reply.bytes.length > 0) yield Buffer.from(reply.bytes.buffer, reply.bytes.byteOffset, reply.bytes.byteLength);
    }
  } finally {
    // One request at a time: the read asked for ahead is answered before the end is sent.
    if (next !== null) await next.catch(() => undefined);
    if (!done) await endQuietly(server, id);
  }
}

/**
 * Feeds a stream to a receive the server applies to its own pool; resolves once it has
 * published the volume (and exported it). `onSent` hears how many bytes have gone so far.
 */
export async function servedReceive(
  server: ControlClient,
  name: string,
  options: { resumable: boolean; resume: boolean },
  chunks: AsyncIterable<Buffer>,
  onSent: (bytes: number) => void = () => undefined,
): Promise<ReceiveEndReply> {
  const { id } = await server.call<SessionReply>({ op: "receive-begin", name, resumable: options.resumable, resume: options.resume });
  let finished = false;
  try {
    let sent = 0;
    for await (const chunk of chunks) {
      for (let at = 0; at < chunk.length; at += CONTROL_RECEIVE_DATA_BYTES_MAX) {
        const bytes = chunk.subarray(at, Math.min(chunk.length, at + CONTROL_RECEIVE_DATA_BYTES_MAX));
        await server.call({ op: "receive-data", id, bytes });
        sent += bytes.length;
        onSent(sent);
      }
    }
    finished = true;
    return await server.call<ReceiveEndReply>({ op: "receive-end", id });
  } finally {
    // Ending a receive before its input did cuts it: the server keeps nothing (or, resumable, its progress).
    if (!finished) await endQuietly(server, id);
  }
}

/** The token of an interrupted resumable receive of `name` the served pool keeps, or null. */
export async function servedReceiveToken(server: ControlClient, name: string): Promise<string | null> {
  return (await server.call<{ token: string | null }>({ op: "receive-token", name })).token;
}

/** Drops what an interrupted receive of `name` kept; false when there was none. */
export async function servedReceiveAbort(server: ControlClient, name: string): Promise<boolean> {
  return (await server.call<{ dropped: boolean }>({ op: "receive-abort", name })).dropped;
}

/** `thinp dump`'s XML from holds on every volume of the served pool; `onDevice` hears each device at the end. */
export async function* servedDump(server: ControlClient, onDevice: (device: DumpedDevice) => void): AsyncGenerator<string> {
  const { id } = await server.call<SessionReply>({ op: "dump-begin" });
  let done = false;
  try {
    while (!done) {
      const reply = await server.call<DumpReadReply>({ op: "dump-read", id, maxBytes: CONTROL_READ_BYTES_MAX });
      done = reply.done;
      for (const device of reply.devices ?? []) onDevice(device);
      if (reply.text.length > 0) yield reply.text;
    }
  } finally {
    if (!done) await endQuietly(server, id);
  }
}

/** An early end; a server that has gone has let go of everything already. */
async function endQuietly(server: ControlClient, id: number): Promise<void> {
  await server.call({ op: "end", id }).catch(() => undefined);
}
