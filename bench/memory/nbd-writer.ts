// The smallest NBD client the memory bench needs: fixed newstyle handshake with
// NBD_OPT_EXPORT_NAME, then WRITEs whose payload is one buffer shared by every request and
// every connection (so the client's own memory stays small however much it sends), and the
// simple replies to them.

import net from "node:net";
import * as P from "../../src/nbd/protocol.js";

const HANDSHAKE_TIMEOUT_MS = 10_000;
const SIMPLE_REPLY_BYTES = 16;

export class NbdWriter {
  /** Bytes received and not yet parsed; only ever a handshake message or part of one reply. */
  private received: Buffer = Buffer.alloc(0);
  private wanted: { byteLength: number; resolve: (bytes: Buffer) => void } | null = null;
  private transmitting = false;
  private expectedReplies = 0;
  private wakeDone: (() => void) | null = null;
  repliedCount = 0;
  errorCount = 0;
  acknowledgedBytes = 0;
  private requestBytes = 0;
  readonly closed: Promise<void>;

  private constructor(private readonly socket: net.Socket) {
    socket.on("data", (chunk: Buffer) => this.onData(chunk));
    socket.on("error", () => {});
    this.closed = new Promise((resolve) =>
      socket.once("close", () => {
        this.wakeDone?.();
        resolve();
      }),
    );
  }

  static async connect(host: string, port: number, exportName: string): Promise<NbdWriter> {
    const socket = net.connect({ host, port, noDelay: true });
    await new Promise<void>((resolve, reject) => {
      socket.once("connect", resolve);
      socket.once("error", reject);
    });
    const writer = new NbdWriter(socket);
    const timer = setTimeout(() => socket.destroy(), HANDSHAKE_TIMEOUT_MS);
    try {
      await writer.handshake(exportName);
    } finally {
      clearTimeout(timer);
    }
    return writer;
  }

  private async handshake(exportName: string): Promise<void> {
    const greeting = await this.read(18);
    if (greeting.readBigUInt64BE(0) !== P.NBD_INIT_MAGIC || greeting.readBigUInt64BE(8) !== P.NBD_OPTS_MAGIC) {
      throw new Error("not an NBD server speaking fixed newstyle");
    }
    const flags = Buffer.alloc(4);
    flags.writeUInt32BE(P.NBD_FLAG_C_FIXED_NEWSTYLE | P.NBD_FLAG_C_NO_ZEROES, 0);
    const name = Buffer.from(exportName, "utf8");
    const option = Buffer.alloc(16);
    option.writeBigUInt64BE(P.NBD_OPTS_MAGIC, 0);
    option.writeUInt32BE(P.NBD_OPT_EXPORT_NAME, 8);
    option.writeUInt32BE(name.length, 12);
    this.socket.write(Buffer.concat([flags, option, name]));
    // Size (u64) and transmission flags (u16); no zero padding, as NO_ZEROES asked.
    await this.read(10);
    this.transmitting = true;
  }

  private read(byteLength: number): Promise<Buffer> {
    return new Promise((resolve, reject) => {
      this.wanted = { byteLength, resolve };
      this.socket.once("close", () => reject(new Error("connection closed during the handshake")));
      this.onData(Buffer.alloc(0));
    });
  }

  private onData(chunk: Buffer): void {
    this.received = this.received.length === 0 ? chunk : Buffer.concat([this.received, chunk]);
    if (!this.transmitting) {
      const wanted = this.wanted;
      if (wanted === null || this.received.length < wanted.byteLength) return;
      this.wanted = null;
      const message = this.received.subarray(0, wanted.byteLength);
      this.received = this.received.subarray(wanted.byteLength);
      wanted.resolve(message);
      return;
    }
    // One reply per pass: bounded by the bytes received.
    while (this.received.length >= SIMPLE_REPLY_BYTES) {
      if (this.received.readUInt32BE(0) !== P.NBD_SIMPLE_REPLY_MAGIC) throw new Error("bad reply magic");
      const errno = this.received.readUInt32BE(4);
      this.received = this.received.subarray(SIMPLE_REPLY_BYTES);
      this.repliedCount++;
      if (errno === 0) this.acknowledgedBytes += this.requestBytes;
      else this.errorCount++;
    }
    if (this.repliedCount === this.expectedReplies) this.wakeDone?.();
  }

  /** Queues every WRITE at once; the socket sends them as fast as the server takes them. */
  sendWrites(offsets: readonly number[], payload: Buffer): void {
    this.requestBytes = payload.length;
    this.expectedReplies += offsets.length;
    offsets.forEach((offset, i) => {
      const header = Buffer.alloc(P.REQUEST_HEADER_BYTES);
      header.writeUInt32BE(P.NBD_REQUEST_MAGIC, 0);
      header.writeUInt16BE(0, 4);
      header.writeUInt16BE(P.NBD_CMD_WRITE, 6);
      header.writeBigUInt64BE(BigInt(i + 1), 8);
      header.writeBigUInt64BE(BigInt(offset), 16);
      header.writeUInt32BE(payload.length, 24);
      this.socket.write(header);
      // The same buffer every time: queued by reference, not copied.
      this.socket.write(payload);
    });
  }

  /** Resolves once every WRITE sent is answered, or the connection has closed. */
  allAnswered(): Promise<void> {
    if (this.repliedCount === this.expectedReplies || this.socket.destroyed) return Promise.resolve();
    return new Promise((resolve) => (this.wakeDone = resolve));
  }

  /** Bytes still queued in this client's socket: how much the server has not taken yet. */
  get unsentBytes(): number {
    return this.socket.writableLength;
  }

  /** NBD_CMD_DISC, then close our side. */
  disconnect(): void {
    const header = Buffer.alloc(P.REQUEST_HEADER_BYTES);
    header.writeUInt32BE(P.NBD_REQUEST_MAGIC, 0);
    header.writeUInt16BE(P.NBD_CMD_DISC, 6);
    this.socket.end(header);
  }

  destroy(): void {
    this.socket.destroy();
  }
}
