// A deliberately small NBD client that speaks raw bytes, so tests can send exactly what
// they mean, including things a well-behaved client never would.

import net from "node:net";
import tls from "node:tls";
import type { NbdServer } from "../../src/nbd/server.js";
import * as P from "../../src/nbd/protocol.js";

export interface OptionReply {
  option: number;
  replyType: number;
  data: Buffer;
}

export interface Chunk {
  flags: number;
  chunkType: number;
  cookie: bigint;
  payload: Buffer;
}

export interface SimpleReply {
  errno: number;
  cookie: bigint;
}

export interface Request {
  command: number;
  flags?: number;
  cookie?: bigint;
  offset?: number | bigint;
  length?: number;
  payload?: Uint8Array;
}

const WAIT_MS = 5_000;

export class WireClient {
  /** Received and not yet read, in arrival order; joined only when a read needs it, so a large reply costs one copy. */
  private received: Buffer[] = [];
  private receivedBytes = 0;
  private waiter: (() => void) | null = null;
  private ended = false;
  private nextCookie = 1n;
  readonly closed: Promise<void>;

  private constructor(readonly socket: net.Socket) {
    socket.on("data", (chunk: Buffer) => {
      this.received.push(chunk);
      this.receivedBytes += chunk.length;
      this.waiter?.();
    });
    socket.on("error", () => {});
    this.closed = new Promise((resolve) =>
      socket.on("close", () => {
        this.ended = true;
        this.waiter?.();
        resolve();
      }),
    );
  }

  static async connect(server: NbdServer): Promise<WireClient> {
    const address = server.address;
    const socket =
      address.kind === "tcp" ? net.connect({ host: address.host, port: address.port }) : net.connect({ path: address.socketPath });
    await new Promise<void>((resolve, reject) => {
      socket.once("connect", resolve);
      socket.once("error", reject);
    });
    return new WireClient(socket);
  }

  /** Connects, checks the greeting and answers with fixed newstyle (and NO_ZEROES unless told not to). */
  static async handshake(server: NbdServer, clientFlags = P.NBD_FLAG_C_FIXED_NEWSTYLE | P.NBD_FLAG_C_NO_ZEROES): Promise<WireClient> {
    const client = await WireClient.connect(server);
    const greeting = await client.read(18);
    if (greeting.readBigUInt64BE(0) !== P.NBD_INIT_MAGIC || greeting.readBigUInt64BE(8) !== P.NBD_OPTS_MAGIC) {
      throw new Error("bad greeting");
    }
    client.sendU32(clientFlags);
    return client;
  }

  /** Connects and goes straight to transmission on `exportName` with GO. */
  static async open(
    server: NbdServer,
    exportName: string,
    { structured = true, metaContext = true }: { structured?: boolean; metaContext?: boolean } = {},
  ): Promise<{ client: WireClient; exportBytes: number; flags: number }> {
    const client = await WireClient.handshake(server);
    if (structured) await client.expectAck(P.NBD_OPT_STRUCTURED_REPLY, Buffer.alloc(0));
    if (structured && metaContext) {
      const replies = await client.optionReplies(P.NBD_OPT_SET_META_CONTEXT, metaContextData(exportName, [P.BASE_ALLOCATION_CONTEXT]));
      if (replies[replies.length - 1]!.replyType !== P.NBD_REP_ACK) throw new Error("SET_META_CONTEXT failed");
    }
    const replies = await client.optionReplies(P.NBD_OPT_GO, infoData(exportName, []));
    const last = replies[replies.length - 1]!;
    if (last.replyType !== P.NBD_REP_ACK) throw new Error(`GO failed with 0x${last.replyType.toString(16)}`);
    const info = exportInfo(replies);
    return { client, exportBytes: info.exportBytes, flags: info.flags };
  }

  async read(byteLength: number, timeoutMs = WAIT_MS): Promise<Buffer> {
    await this.waitFor(byteLength, timeoutMs);
    const joined = this.joined();
    const out = joined.subarray(0, byteLength);
    this.received = [joined.subarray(byteLength)];
    this.receivedBytes -= byteLength;
    return out;
  }

  private joined(): Buffer {
    if (this.received.length !== 1) this.received = [Buffer.concat(this.received)];
    return this.received[0]!;
  }

  /** The next 4 bytes as a number, left unread. */
  async peekU32(): Promise<number> {
    await this.waitFor(4, WAIT_MS);
    return this.joined().readUInt32BE(0);
  }

  private async waitFor(byteLength: number, timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (this.receivedBytes < byteLength) {
      if (this.ended) throw new Error(`connection closed with ${this.receivedBytes} of ${byteLength} bytes`);
      const remaining = deadline - Date.now();
      if (remaining <= 0) throw new Error(`timed out waiting for ${byteLength} bytes`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, remaining);
        this.waiter = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      this.waiter = null;
    }
  }

  /** Resolves true if the server closes the connection within the time (having sent nothing more). */
  async closesWithin(timeoutMs = WAIT_MS): Promise<boolean> {
    const timedOut = new Promise<false>((resolve) => setTimeout(() => resolve(false), timeoutMs).unref());
    return Promise.race([this.closed.then(() => true as const), timedOut]);
  }

  get pendingBytes(): number {
    return this.receivedBytes;
  }

  sendRaw(bytes: Uint8Array): void {
    this.socket.write(bytes);
  }

  sendU32(value: number): void {
    const out = Buffer.alloc(4);
    out.writeUInt32BE(value >>> 0, 0);
    this.socket.write(out);
  }

  sendOption(option: number, data: Uint8Array, magic = P.NBD_OPTS_MAGIC): void {
    const header = Buffer.alloc(16);
    header.writeBigUInt64BE(magic, 0);
    header.writeUInt32BE(option, 8);
    header.writeUInt32BE(data.length, 12);
    this.socket.write(Buffer.concat([header, data]));
  }

  async readOptionReply(): Promise<OptionReply> {
    const header = await this.read(20);
    if (header.readBigUInt64BE(0) !== P.NBD_REP_MAGIC) throw new Error("bad option reply magic");
    const data = await this.read(header.readUInt32BE(16));
    return { option: header.readUInt32BE(8), replyType: header.readUInt32BE(12), data: Buffer.from(data) };
  }

  /** Sends an option and collects replies up to and including the final one (ACK or error). */
  async optionReplies(option: number, data: Uint8Array): Promise<OptionReply[]> {
    this.sendOption(option, data);
    const replies: OptionReply[] = [];
    // Bounded: a well-behaved server ends every option; 10000 replies would mean a bug.
    for (let i = 0; i < 10_000; i++) {
      const reply = await this.readOptionReply();
      if (reply.option !== option) throw new Error(`reply for option ${reply.option}, expected ${option}`);
      replies.push(reply);
      if (reply.replyType === P.NBD_REP_ACK || reply.replyType >= 0x8000_0000) return replies;
    }
    throw new Error("too many option replies");
  }

  async expectAck(option: number, data: Uint8Array): Promise<void> {
    const replies = await this.optionReplies(option, data);
    if (replies.length !== 1 || replies[0]!.replyType !== P.NBD_REP_ACK) throw new Error(`option ${option} not acknowledged`);
  }

  /** Sends a request and returns its cookie. */
  send(request: Request): bigint {
    const cookie = request.cookie ?? this.nextCookie++;
    const header = Buffer.alloc(28);
    header.writeUInt32BE(P.NBD_REQUEST_MAGIC, 0);
    header.writeUInt16BE(request.flags ?? 0, 4);
    header.writeUInt16BE(request.command, 6);
    header.writeBigUInt64BE(cookie, 8);
    header.writeBigUInt64BE(BigInt(request.offset ?? 0), 16);
    header.writeUInt32BE(request.length ?? request.payload?.length ?? 0, 24);
    this.socket.write(request.payload ? Buffer.concat([header, request.payload]) : header);
    return cookie;
  }

  async readSimpleReply(): Promise<SimpleReply> {
    const header = await this.read(16);
    const magic = header.readUInt32BE(0);
    if (magic !== P.NBD_SIMPLE_REPLY_MAGIC) throw new Error(`expected a simple reply, got magic 0x${magic.toString(16)}`);
    return { errno: header.readUInt32BE(4), cookie: header.readBigUInt64BE(8) };
  }

  async readChunk(): Promise<Chunk> {
    const header = await this.read(20);
    const magic = header.readUInt32BE(0);
    if (magic !== P.NBD_STRUCTURED_REPLY_MAGIC) throw new Error(`expected a structured chunk, got magic 0x${magic.toString(16)}`);
    const payload = Buffer.from(await this.read(header.readUInt32BE(16)));
    return { flags: header.readUInt16BE(4), chunkType: header.readUInt16BE(6), cookie: header.readBigUInt64BE(8), payload };
  }

  /** Either kind of reply to a request without read data: its errno (0 for success). */
  async readStatus(): Promise<{ cookie: bigint; errno: number; message?: string }> {
    const magic = await this.peekU32();
    if (magic === P.NBD_SIMPLE_REPLY_MAGIC) return this.readSimpleReply();
    const chunks = await this.readChunksUntilDone();
    const error = chunks.find((chunk) => chunk.chunkType === P.NBD_REPLY_TYPE_ERROR);
    if (error === undefined) return { cookie: chunks[0]!.cookie, errno: 0 };
    return { cookie: error.cookie, ...decodeErrorPayload(error.payload) };
  }

  /** Chunks of one reply (assumes no other reply interleaves). */
  async readChunksUntilDone(): Promise<Chunk[]> {
    const chunks: Chunk[] = [];
    for (let i = 0; i < 100_000; i++) {
      const chunk = await this.readChunk();
      chunks.push(chunk);
      if (chunk.flags & P.NBD_REPLY_FLAG_DONE) return chunks;
    }
    throw new Error("reply never finished");
  }

  /** A structured READ reply reassembled, with the chunk list for inspection. */
  async readStructuredRead(offset: number, length: number): Promise<{ data: Buffer; chunks: Chunk[]; errno: number }> {
    const chunks = await this.readChunksUntilDone();
    const data = Buffer.alloc(length);
    let covered = 0;
    for (const chunk of chunks) {
      if (chunk.chunkType === P.NBD_REPLY_TYPE_OFFSET_DATA) {
        const at = Number(chunk.payload.readBigUInt64BE(0)) - offset;
        chunk.payload.copy(data, at, 8);
        covered += chunk.payload.length - 8;
      } else if (chunk.chunkType === P.NBD_REPLY_TYPE_OFFSET_HOLE) {
        covered += chunk.payload.readUInt32BE(8);
      } else if (chunk.chunkType === P.NBD_REPLY_TYPE_ERROR) {
        return { data, chunks, errno: chunk.payload.readUInt32BE(0) };
      }
    }
    if (covered !== length) throw new Error(`read reply covered ${covered} of ${length} bytes`);
    return { data, chunks, errno: 0 };
  }

  /**
   * Sends NBD_OPT_STARTTLS, expects its ACK, and runs the client side of TLS on the same
   * connection; resolves the client that speaks over TLS (this one is done with).
   */
  async startTls(options: tls.ConnectionOptions): Promise<WireClient> {
    await this.expectAck(P.NBD_OPT_STARTTLS, Buffer.alloc(0));
    if (this.receivedBytes !== 0) throw new Error(`${this.receivedBytes} bytes after the STARTTLS reply`);
    this.socket.removeAllListeners("data");
    const secure = tls.connect({ ...options, socket: this.socket });
    await new Promise<void>((resolve, reject) => {
      secure.once("secureConnect", resolve);
      secure.once("error", reject);
    });
    return new WireClient(secure);
  }

  close(): void {
    this.socket.destroy();
  }
}

export function decodeErrorPayload(payload: Buffer): { errno: number; message: string } {
  const messageBytes = payload.readUInt16BE(4);
  return { errno: payload.readUInt32BE(0), message: payload.subarray(6, 6 + messageBytes).toString("utf8") };
}

export function infoData(exportName: string | Buffer, infoTypes: number[]): Buffer {
  const name = typeof exportName === "string" ? Buffer.from(exportName, "utf8") : exportName;
  const out = Buffer.alloc(4 + name.length + 2 + 2 * infoTypes.length);
  out.writeUInt32BE(name.length, 0);
  name.copy(out, 4);
  out.writeUInt16BE(infoTypes.length, 4 + name.length);
  infoTypes.forEach((infoType, i) => out.writeUInt16BE(infoType, 6 + name.length + 2 * i));
  return out;
}

export function metaContextData(exportName: string, queries: string[]): Buffer {
  const parts: Buffer[] = [];
  const u32 = (value: number) => {
    const b = Buffer.alloc(4);
    b.writeUInt32BE(value, 0);
    return b;
  };
  const name = Buffer.from(exportName, "utf8");
  parts.push(u32(name.length), name, u32(queries.length));
  for (const query of queries) {
    const bytes = Buffer.from(query, "utf8");
    parts.push(u32(bytes.length), bytes);
  }
  return Buffer.concat(parts);
}

/** Size and transmission flags from the NBD_INFO_EXPORT among INFO/GO replies. */
export function exportInfo(replies: OptionReply[]): { exportBytes: number; flags: number } {
  const info = replies.find((reply) => reply.replyType === P.NBD_REP_INFO && reply.data.readUInt16BE(0) === P.NBD_INFO_EXPORT);
  if (info === undefined) throw new Error("no NBD_INFO_EXPORT");
  return { exportBytes: Number(info.data.readBigUInt64BE(2)), flags: info.data.readUInt16BE(10) };
}
