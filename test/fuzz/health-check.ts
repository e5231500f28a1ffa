// The oracle's well-behaved client: after each batch of abuse, a fresh connection must still
// handshake, write a pattern, read the same bytes back, and disconnect cleanly.

import * as P from "../../src/nbd/protocol.js";
import type { SeededRandom } from "../support/random.js";
import { pattern } from "./content-model.js";
import { FuzzSocket } from "./fuzz-socket.js";
import { HEALTH_EXPORT, type FuzzServer } from "./fuzz-target.js";
import { openSession } from "./option-replies.js";
import { FuzzFailure, ReplyReader } from "./reply-reader.js";
import { requestBytes, requestHeader } from "./wire-encoding.js";

export async function wellBehavedClient(server: FuzzServer, random: SeededRandom): Promise<void> {
  const socket = await FuzzSocket.connect(server.socketPath);
  try {
    const structured = random.next() < 0.5;
    const session = await openSession(socket, server, {
      exportName: HEALTH_EXPORT,
      structured,
      selectContext: structured,
      via: "go",
      noZeroes: true,
      infoTypes: [],
    });
    const byteLength = 1 + random.below(64 * 1024);
    const offset = random.below(session.facts.sizeBytes - byteLength + 1);
    const data = pattern(byteLength, random.below(1000));
    const reader = new ReplyReader(socket, session);
    const write = {
      command: P.NBD_CMD_WRITE,
      flags: random.next() < 0.2 ? P.NBD_CMD_FLAG_FUA : 0,
      cookie: 1n,
      offset: BigInt(offset),
      byteLength,
      payload: data,
    };
    reader.add({ spec: write, expectedErrno: 0, unsettled: [] });
    socket.send(requestBytes(write));
    await reader.next();
    const read = { command: P.NBD_CMD_READ, flags: 0, cookie: 2n, offset: BigInt(offset), byteLength };
    reader.add({ spec: read, expectedErrno: 0, unsettled: [] });
    socket.send(requestBytes(read));
    const reply = await reader.next();
    if (!reply.data!.equals(data))
      throw new FuzzFailure(`well-behaved client: read back differs from the pattern written at ${offset}+${byteLength}`);
    socket.send(requestHeader({ command: P.NBD_CMD_DISC, flags: 0, cookie: 3n, offset: 0n, byteLength: 0 }));
    if (!(await socket.drainUntilClosed()) || socket.discardedBytes > 0)
      throw new FuzzFailure("well-behaved client: DISC did not close the connection cleanly");
  } catch (error) {
    if (error instanceof FuzzFailure) throw error;
    throw new FuzzFailure(`well-behaved client on the ${server.kind} server: ${(error as Error).message}`);
  } finally {
    socket.destroy();
  }
}
