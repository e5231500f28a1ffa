// The control socket of a running `thinp serve`: one request at a time per connection,
// each answered with the result or the typed error's code and message.

import { unlink } from "node:fs/promises";
import net from "node:net";
import { ThinpError } from "../errors.js";
import type { NbdServerAddress } from "../nbd/index.js";
import {
  CONTROL_PROTOCOL_VERSION,
  FrameReader,
  frameMessage,
  type ControlReply,
  type ControlRequest,
  type HelloReply,
} from "./control-protocol.js";
import { CONTROL_CONNECTIONS_MAX } from "./limits.js";
import type { PoolOperations } from "./pool-operations.js";

// Its home is limits.ts; the name stays here for the modules that import it from here.
export { CONTROL_CONNECTIONS_MAX };

/**
 * Operations whose state lives as long as one connection (live-history.ts): a send's holds,
 * a receive's hidden volume. `close` runs once the connection closes, after every request
 * it sent has been answered.
 */
export interface ConnectionOperations {
  handles(op: string): boolean;
  dispatch(request: ControlRequest): Promise<unknown>;
  close(): Promise<void>;
}

export interface ControlServer {
  readonly socketPath: string;
  close(): Promise<void>;
}

export async function startControlServer(
  socketPath: string,
  operations: PoolOperations,
  log: (message: string) => void,
  nbdAddresses: readonly NbdServerAddress[] = [],
  /** For a process that is not `thinp serve`: what it is busy with, told in `hello` (HelloReply.busyWith). */
  busyWith?: string,
  /** Opens each connection's own operations (diff, send, receive, dump while served). */
  connectionOperations?: () => ConnectionOperations,
): Promise<ControlServer> {
  await removeStaleSocket(socketPath);
  const sockets = new Set<net.Socket>();
  const server = net.createServer((socket) => {
    if (sockets.size >= CONTROL_CONNECTIONS_MAX) {
      socket.destroy();
      return;
    }
    sockets.add(socket);
    const own = connectionOperations?.() ?? null;
    let queue = Promise.resolve();
    socket.on("close", () => {
      sockets.delete(socket);
      if (own)
        queue = queue
          .then(() => own.close())
          .catch((error: unknown) => log(`control: ending a connection's operations failed: ${(error as Error).message}`));
    });
    socket.on("error", () => undefined);
    const reader = new FrameReader();
    socket.on("data", (chunk: Buffer) => {
      let messages: unknown[];
      try {
        messages = reader.push(chunk);
      } catch (error) {
        log(`control: closing a connection that sent a malformed message: ${(error as Error).message}`);
        socket.destroy();
        return;
      }
      for (const message of messages) {
        queue = queue.then(async () => {
          const reply = await answer(message, operations, nbdAddresses, busyWith, own);
          if (!socket.destroyed) socket.write(frameMessage(reply));
        });
      }
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(socketPath, () => {
      server.off("error", reject);
      resolve();
    });
  });
  return {
    socketPath,
    async close() {
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        for (const socket of sockets) socket.end();
      });
      await unlink(socketPath).catch(() => undefined);
    },
  };
}

async function answer(
  message: unknown,
  operations: PoolOperations,
  nbdAddresses: readonly NbdServerAddress[],
  busyWith: string | undefined,
  own: ConnectionOperations | null,
): Promise<ControlReply> {
  try {
    const request = message as ControlRequest;
    if (own !== null && typeof request === "object" && request !== null && own.handles(String(request.op))) {
      return { ok: true, result: await own.dispatch(request) };
    }
    return { ok: true, result: await dispatch(request, operations, nbdAddresses, busyWith) };
  } catch (error) {
    if (error instanceof ThinpError) return { ok: false, error: { code: error.code, message: error.message } };
    return { ok: false, error: { code: "INTERNAL", message: (error as Error)?.message ?? String(error) } };
  }
}

async function dispatch(
  request: ControlRequest,
  operations: PoolOperations,
  nbdAddresses: readonly NbdServerAddress[],
  busyWith: string | undefined,
): Promise<unknown> {
  if (typeof request !== "object" || request === null || typeof request.op !== "string") throw new Error("a request needs an op");
  switch (request.op) {
    case "hello":
      return {
        version: CONTROL_PROTOCOL_VERSION,
        pid: process.pid,
        nbd: [...nbdAddresses],
        degraded: (await operations.status()).degraded,
        ...(busyWith === undefined ? {} : { busyWith }),
      } satisfies HelloReply;
    case "create":
      return operations.createVolume(String(request.name), Number(request.sizeBytes));
    case "snapshot":
      return operations.snapshot(String(request.origin), String(request.name), { readOnly: request.readOnly === true });
    case "delete":
      return operations.deleteVolume(String(request.name), { defer: request.defer === true });
    case "resize":
      return operations.resizeVolume(String(request.name), Number(request.sizeBytes), { force: request.force === true });
    case "resize-pool":
      return operations.resizePool(Number(request.sizeBytes));
    case "list":
      return operations.listVolumes();
    case "usage":
      return operations.usage(String(request.name));
    case "status":
      return operations.status();
    default:
      throw new Error(`unknown control operation '${(request as { op: string }).op}'`);
  }
}

/** A socket file whose server is gone (after a crash) is removed; a live one is an error. */
async function removeStaleSocket(socketPath: string): Promise<void> {
  const live = await new Promise<boolean>((resolve) => {
    const probe = net.connect(socketPath);
    probe.once("connect", () => {
      probe.destroy();
      resolve(true);
    });
    probe.once("error", () => resolve(false));
  });
  if (live) throw new Error(`another thinp server is listening on ${socketPath}`);
  await unlink(socketPath).catch(() => undefined);
}
