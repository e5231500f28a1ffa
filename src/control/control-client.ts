// The CLI's side of the control socket: PoolOperations carried out by a running server.

import net from "node:net";
import { ServerUnreachableError, ThinpError, type ErrorCode } from "../errors.js";
import type { NbdServerAddress } from "../nbd/index.js";
import type { PoolDegradation, PoolStatus, VolumeInfo, VolumeUsage } from "../thin/api.js";
import {
  CONTROL_REQUEST_TIMEOUT_MS,
  CONTROL_REPLY_BYTES_MAX,
  FrameReader,
  frameMessage,
  type ControlReply,
  type ControlRequest,
  type HelloReply,
} from "./control-protocol.js";
import type { PoolOperations, ResizeResult } from "./pool-operations.js";

/** An error the server reported, keeping its code so the CLI maps it to the same exit status. */
export class RemoteError extends ThinpError {
  constructor(
    readonly code: ErrorCode,
    message: string,
  ) {
    super(message);
  }
}

export class ControlClient implements PoolOperations {
  private constructor(
    readonly socketPath: string,
    private readonly socket: net.Socket,
    readonly serverPid: number,
    /** Where the server's NBD exports listen, so a message can say how to reach them. */
    readonly nbdAddresses: readonly NbdServerAddress[],
    /** The served pool's space map is damaged, so it is read-only; null when it is whole. */
    readonly degraded: PoolDegradation | null = null,
    /** Null for `thinp serve`; else what the long command holding the pool is doing (HelloReply.busyWith). */
    readonly busyWith: string | null = null,
  ) {}

  /** Connects to a running server, or returns null when none answers on the socket. */
  static async connect(socketPath: string): Promise<ControlClient | null> {
    const socket = await new Promise<net.Socket | null>((resolve) => {
      const candidate = net.connect(socketPath);
      candidate.once("connect", () => resolve(candidate));
      candidate.once("error", () => resolve(null));
    });
    if (!socket) return null;
    // Between requests nobody else listens; a server that dies then must not crash the CLI.
    // The next request sees the close and reports SERVER_UNREACHABLE.
    socket.on("error", () => undefined);
    const client = new ControlClient(socketPath, socket, 0, []);
    const hello = (await client.request({ op: "hello", version: 1 })) as HelloReply;
    const busyWith = typeof hello.busyWith === "string" ? hello.busyWith : null;
    return new ControlClient(socketPath, socket, hello.pid, hello.nbd ?? [], hello.degraded ?? null, busyWith);
  }

  close(): void {
    this.socket.end();
  }

  createVolume(name: string, sizeBytes: number): Promise<VolumeInfo> {
    return this.request({ op: "create", name, sizeBytes }) as Promise<VolumeInfo>;
  }
  snapshot(origin: string, name: string, options: { readOnly: boolean }): Promise<VolumeInfo> {
    return this.request({ op: "snapshot", origin, name, readOnly: options.readOnly }) as Promise<VolumeInfo>;
  }
  deleteVolume(name: string, options: { defer: boolean }): Promise<{ deferred: boolean }> {
    return this.request({ op: "delete", name, defer: options.defer }) as Promise<{ deferred: boolean }>;
  }
  async resizeVolume(name: string, sizeBytes: number, options: { force: boolean }): Promise<ResizeResult> {
    const result = (await this.request({ op: "resize", name, sizeBytes, force: options.force })) as ResizeResult;
    // A server from before `force` sends the info alone; it never shrank under a client.
    return { ...result, shrunkUnderClients: result.shrunkUnderClients ?? 0 };
  }
  resizePool(sizeBytes: number): Promise<PoolStatus> {
    return this.request({ op: "resize-pool", sizeBytes }) as Promise<PoolStatus>;
  }
  listVolumes(): Promise<VolumeInfo[]> {
    return this.request({ op: "list" }) as Promise<VolumeInfo[]>;
  }
  usage(name: string): Promise<VolumeUsage> {
    return this.request({ op: "usage", name }) as Promise<VolumeUsage>;
  }
  status(): Promise<PoolStatus> {
    return this.request({ op: "status" }) as Promise<PoolStatus>;
  }

  /**
   * Any request, answered with its result: for the history operations (history-client.ts).
   * One at a time: a second request before the first is answered would share its reply.
   */
  call<T>(request: ControlRequest): Promise<T> {
    return this.request(request) as Promise<T>;
  }

  private request(request: ControlRequest): Promise<unknown> {
    return new Promise((resolve, reject) => {
      const reader = new FrameReader(CONTROL_REPLY_BYTES_MAX);
      const cleanup = () => {
        clearTimeout(timer);
        this.socket.off("data", onData);
        this.socket.off("close", onClose);
        this.socket.off("error", onError);
      };
      const timer = setTimeout(() => {
        cleanup();
        reject(new ServerUnreachableError(this.socketPath, `no answer within ${CONTROL_REQUEST_TIMEOUT_MS} ms`));
      }, CONTROL_REQUEST_TIMEOUT_MS);
      const onData = (chunk: Buffer) => {
        let messages: unknown[];
        try {
          messages = reader.push(chunk);
        } catch (error) {
          cleanup();
          reject(new ServerUnreachableError(this.socketPath, (error as Error).message));
          return;
        }
        if (messages.length === 0) return;
        cleanup();
        const reply = messages[0] as ControlReply;
        if (reply.ok) resolve(reply.result);
        else reject(remoteError(reply.error.code, reply.error.message));
      };
      const onClose = () => {
        cleanup();
        reject(new ServerUnreachableError(this.socketPath, "the server closed the connection"));
      };
      const onError = (error: Error) => {
        cleanup();
        reject(new ServerUnreachableError(this.socketPath, error.message));
      };
      this.socket.on("data", onData);
      this.socket.once("close", onClose);
      this.socket.once("error", onError);
      this.socket.write(frameMessage(request));
    });
  }
}

function remoteError(code: ErrorCode | "INTERNAL", message: string): Error {
  return code === "INTERNAL" ? new Error(`the server failed: ${message}`) : new RemoteError(code, message);
}
