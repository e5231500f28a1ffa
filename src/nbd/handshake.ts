// Option haggling (fixed newstyle): from the greeting to the moment a client enters
// transmission on one export, or leaves.

import type { VolumeHandle } from "../thin/api.js";
import { assert } from "../io/assert.js";
import { ThinpError } from "../errors.js";
import type { ChangeTracker, ExportCatalog, ExportListing } from "./catalog.js";
import {
  BLOCK_SIZE_MAX_BYTES,
  BLOCK_SIZE_MIN_BYTES,
  BLOCK_SIZE_PREFERRED_BYTES,
  META_CONTEXTS_SELECTED_MAX,
  NAME_BYTES_MAX,
  OPTION_BYTES_MAX,
} from "./limits.js";
import { contextsToList, contextsToSelect, dirtyBitmapContext, type RequestedContext, type SelectedContext } from "./meta-context.js";
import type { NbdLog } from "./nbd-log.js";
import {
  OPTION_HEADER_BYTES,
  decodeInfoRequest,
  decodeMetaContextRequest,
  decodeOptionHeader,
  encodeExportNameReply,
  encodeGreeting,
  encodeInfoBlockSize,
  encodeInfoExport,
  encodeInfoText,
  encodeMetaContextReply,
  encodeOptionError,
  encodeOptionReply,
  encodeServerReply,
} from "./option-messages.js";
import {
  BASE_ALLOCATION_CONTEXT,
  BASE_ALLOCATION_CONTEXT_ID,
  NBD_FLAG_C_FIXED_NEWSTYLE,
  NBD_FLAG_C_NO_ZEROES,
  NBD_INFO_DESCRIPTION,
  NBD_INFO_NAME,
  NBD_OPTS_MAGIC,
  NBD_OPT_ABORT,
  NBD_OPT_EXPORT_NAME,
  NBD_OPT_GO,
  NBD_OPT_INFO,
  NBD_OPT_LIST,
  NBD_OPT_LIST_META_CONTEXT,
  NBD_OPT_SET_META_CONTEXT,
  NBD_OPT_STARTTLS,
  NBD_OPT_STRUCTURED_REPLY,
  NBD_REP_ACK,
  NBD_REP_ERR_INVALID,
  NBD_REP_ERR_POLICY,
  NBD_REP_ERR_SHUTDOWN,
  NBD_REP_ERR_TLS_REQD,
  NBD_REP_ERR_TOO_BIG,
  NBD_REP_ERR_UNKNOWN,
  NBD_REP_ERR_UNSUP,
} from "./protocol.js";
import type { ReplyWriter } from "./reply-writer.js";
import { ProtocolViolationError } from "./session-errors.js";
import type { SocketReader } from "./socket-reader.js";
import type { NbdTlsMode } from "./tls.js";
import { transmissionFlags } from "./transmission-flags.js";
import { decodeWireString } from "./wire-strings.js";

/** What option haggling agreed on; everything transmission needs to know. Already attached. */
export interface NegotiatedExport {
  exportName: string;
  handle: VolumeHandle;
  /** The size told to the client; requests are checked against this, not a later size. */
  exportBytes: number;
  readOnly: boolean;
  transmissionFlags: number;
  structuredReplies: boolean;
  /** The metadata contexts selected for this export, in id order; empty when none were. */
  contexts: readonly SelectedContext[];
}

export interface HandshakeEnvironment {
  catalog: ExportCatalog;
  serverReadOnly: boolean;
  optionsPerHandshakeMax: number;
  isShuttingDown: () => boolean;
  log: NbdLog;
  /** Null when the server does not offer TLS. */
  tls: HandshakeTls | null;
}

/** The reader and writer of the connection's current socket: the accepted one, or the TLS socket over it. */
export interface HandshakeChannel {
  reader: SocketReader;
  writer: ReplyWriter;
}

export interface HandshakeTls {
  mode: NbdTlsMode;
  /**
   * Runs the TLS handshake over the connection's socket, which the old reader and writer
   * have let go of, and returns the channel over TLS. Rejects with TlsHandshakeError.
   */
  upgrade: () => Promise<HandshakeChannel>;
}

type OptionOutcome =
  { kind: "continue" } | { kind: "close" } | { kind: "starttls" } | { kind: "transmission"; negotiated: NegotiatedExport };
type Lookup = { found: true; handle: VolumeHandle } | { found: false; reason: string };
const CONTINUE: OptionOutcome = { kind: "continue" };
const CLOSE: OptionOutcome = { kind: "close" };
const STARTTLS: OptionOutcome = { kind: "starttls" };

const KNOWN_CLIENT_FLAGS = NBD_FLAG_C_FIXED_NEWSTYLE | NBD_FLAG_C_NO_ZEROES;

/**
 * Runs the handshake. Resolves with the negotiated export, or null when the connection should
 * simply close (the client aborted, or asked for an export by NBD_OPT_EXPORT_NAME that we
 * cannot serve). Throws ProtocolViolationError or PeerClosedError when the client broke off.
 */
export async function negotiate(channel: HandshakeChannel, environment: HandshakeEnvironment): Promise<NegotiatedExport | null> {
  let { reader, writer } = channel;
  writer.send([encodeGreeting()]);
  const clientFlags = (await reader.readExact(4)).readUInt32BE(0);
  // The spec: the server MUST drop the connection on a client flag it does not know.
  if ((clientFlags & ~KNOWN_CLIENT_FLAGS) !== 0) {
    throw new ProtocolViolationError(`unknown client flags 0x${clientFlags.toString(16)}`);
  }
  const noZeroes = (clientFlags & NBD_FLAG_C_NO_ZEROES) !== 0;
  // TLS needs fixed newstyle; without it this client could only ever be served in plaintext.
  if (environment.tls?.mode === "require" && (clientFlags & NBD_FLAG_C_FIXED_NEWSTYLE) === 0) {
    environment.log("info", "client does not speak fixed newstyle, so it cannot start TLS, which this server requires; closing");
    return null;
  }
  let haggling = new OptionHaggling(writer, environment, noZeroes, false);
  for (let optionCount = 1; optionCount <= environment.optionsPerHandshakeMax; optionCount++) {
    // Replies wait in memory until the client reads them. A client that sends options and
    // reads nothing (LIST answers 16 bytes with every export's name) must not grow that
    // without bound, so take no more options until the socket drains.
    await writer.whenDrained();
    const header = decodeOptionHeader(await reader.readExact(OPTION_HEADER_BYTES));
    if (header.magic !== NBD_OPTS_MAGIC) {
      throw new ProtocolViolationError(`bad option magic 0x${header.magic.toString(16)}`);
    }
    if (header.dataByteLength > OPTION_BYTES_MAX) {
      throw new ProtocolViolationError(`option ${header.option} has ${header.dataByteLength} bytes of data, more than ${OPTION_BYTES_MAX}`);
    }
    const data = await reader.readExact(header.dataByteLength);
    const outcome = await haggling.answer(header.option, data);
    if (outcome.kind === "close") return null;
    if (outcome.kind === "transmission") return outcome.negotiated;
    if (outcome.kind === "starttls") {
      ({ reader, writer } = await startTls(reader, writer, environment));
      // The spec: nothing negotiated before STARTTLS survives it (structured replies, contexts).
      haggling = new OptionHaggling(writer, environment, noZeroes, true);
    }
  }
  throw new ProtocolViolationError(`more than ${environment.optionsPerHandshakeMax} options in one handshake`);
}

/** Acknowledges STARTTLS on the plaintext socket, then hands the socket to TLS; after this, nothing goes in clear. */
async function startTls(reader: SocketReader, writer: ReplyWriter, environment: HandshakeEnvironment): Promise<HandshakeChannel> {
  const tls = environment.tls;
  assert(tls !== null, "STARTTLS is acknowledged only when the server offers TLS");
  // The client may send nothing between STARTTLS and our ACK: its next bytes are the TLS hello.
  const earlyBytes = reader.detach();
  if (earlyBytes > 0) throw new ProtocolViolationError(`${earlyBytes} bytes sent after NBD_OPT_STARTTLS before its reply`);
  await new Promise<void>((resolve) => writer.send([encodeOptionReply(NBD_OPT_STARTTLS, NBD_REP_ACK)], resolve));
  writer.detach();
  const channel = await tls.upgrade();
  environment.log("debug", "TLS started");
  return channel;
}

class OptionHaggling {
  private structuredReplies = false;
  /** The last SET_META_CONTEXT: for which export, and what it selected. */
  private selection: { exportName: string; contexts: SelectedContext[] } | null = null;

  constructor(
    private readonly writer: ReplyWriter,
    private readonly environment: HandshakeEnvironment,
    private readonly noZeroes: boolean,
    /** True once STARTTLS succeeded on this connection. */
    private readonly secured: boolean,
  ) {}

  async answer(option: number, data: Buffer): Promise<OptionOutcome> {
    if (this.environment.isShuttingDown() && option !== NBD_OPT_ABORT) {
      // NBD_OPT_EXPORT_NAME cannot carry an error, so the only answer is to hang up.
      if (option === NBD_OPT_EXPORT_NAME) return CLOSE;
      return this.fail(option, NBD_REP_ERR_SHUTDOWN, "the server is shutting down");
    }
    if (option === NBD_OPT_STARTTLS) return this.startTls(data);
    // FORCEDTLS: before TLS, nothing but STARTTLS and ABORT; not even the export list.
    if (this.environment.tls?.mode === "require" && !this.secured && option !== NBD_OPT_ABORT) {
      // NBD_OPT_EXPORT_NAME cannot carry an error: the spec's answer is to end the session.
      if (option === NBD_OPT_EXPORT_NAME) {
        this.environment.log("info", "NBD_OPT_EXPORT_NAME before STARTTLS, which this server requires; closing");
        return CLOSE;
      }
      return this.fail(option, NBD_REP_ERR_TLS_REQD, "this server requires TLS: send NBD_OPT_STARTTLS first");
    }
    switch (option) {
      case NBD_OPT_EXPORT_NAME:
        return this.exportName(data);
      case NBD_OPT_ABORT:
        // Any data is ignored, as the spec asks.
        this.writer.send([encodeOptionReply(option, NBD_REP_ACK)]);
        return CLOSE;
      case NBD_OPT_LIST:
        return this.list(data);
      case NBD_OPT_INFO:
      case NBD_OPT_GO:
        return this.infoOrGo(option, data);
      case NBD_OPT_STRUCTURED_REPLY:
        if (data.length !== 0) return this.fail(option, NBD_REP_ERR_INVALID, "NBD_OPT_STRUCTURED_REPLY takes no data");
        this.structuredReplies = true;
        this.writer.send([encodeOptionReply(option, NBD_REP_ACK)]);
        return CONTINUE;
      case NBD_OPT_LIST_META_CONTEXT:
        return this.listMetaContext(data);
      case NBD_OPT_SET_META_CONTEXT:
        return this.setMetaContext(data);
      default:
        return this.fail(option, NBD_REP_ERR_UNSUP, `option ${option} is not supported by this server`);
    }
  }

  private startTls(data: Buffer): OptionOutcome {
    const option = NBD_OPT_STARTTLS;
    // Without TLS configured, UNSUP is an answer the spec allows (NOTLS mode).
    if (this.environment.tls === null) return this.fail(option, NBD_REP_ERR_UNSUP, "this server is not configured for TLS");
    // No second handshake inside the first, and no way back to plaintext.
    if (this.secured) return this.fail(option, NBD_REP_ERR_INVALID, "TLS is already active on this connection");
    if (data.length !== 0) return this.fail(option, NBD_REP_ERR_INVALID, "NBD_OPT_STARTTLS takes no data");
    return STARTTLS;
  }

  private fail(option: number, errorType: number, message: string): OptionOutcome {
    this.environment.log("debug", `option ${option} refused: ${message}`);
    this.writer.send([encodeOptionError(option, errorType, message)]);
    return CONTINUE;
  }

  private async exportName(data: Buffer): Promise<OptionOutcome> {
    const name = decodeWireString(data);
    // This option cannot return an error; the spec's answer to a bad or unknown name is to hang up.
    if (!name.ok) throw new ProtocolViolationError(`NBD_OPT_EXPORT_NAME: export name ${name.reason}`);
    const lookup = await this.lookUp(name.value);
    const refusal = lookup.found ? this.attach(name.value, lookup.handle) : lookup.reason;
    if (!lookup.found || refusal !== null) {
      this.environment.log("info", `NBD_OPT_EXPORT_NAME: ${refusal}; closing`);
      return CLOSE;
    }
    const negotiated = this.negotiatedExport(name.value, lookup.handle);
    this.writer.send([encodeExportNameReply(negotiated.exportBytes, negotiated.transmissionFlags, this.noZeroes)]);
    return { kind: "transmission", negotiated };
  }

  private async list(data: Buffer): Promise<OptionOutcome> {
    if (data.length !== 0) return this.fail(NBD_OPT_LIST, NBD_REP_ERR_INVALID, "NBD_OPT_LIST takes no data");
    let listings: ExportListing[];
    try {
      listings = await this.environment.catalog.list();
    } catch (error) {
      if (!(error instanceof ThinpError)) throw error;
      return this.fail(NBD_OPT_LIST, NBD_REP_ERR_POLICY, `cannot list exports: ${error.message}`);
    }
    const replies: Buffer[] = [];
    for (const listing of listings) {
      if (Buffer.byteLength(listing.name, "utf8") > NAME_BYTES_MAX) {
        this.environment.log("warn", `export name of ${listing.name.length} characters is too long for NBD; not listed`);
        continue;
      }
      replies.push(encodeServerReply(NBD_OPT_LIST, listing.name, listing.description));
    }
    replies.push(encodeOptionReply(NBD_OPT_LIST, NBD_REP_ACK));
    this.writer.send(replies);
    return CONTINUE;
  }

  private async infoOrGo(option: typeof NBD_OPT_INFO | typeof NBD_OPT_GO, data: Buffer): Promise<OptionOutcome> {
    const request = decodeInfoRequest(data);
    if (!request.ok) return this.fail(option, NBD_REP_ERR_INVALID, request.reason);
    const { exportName, infoTypes } = request.value;
    const lookup = await this.lookUp(exportName);
    if (!lookup.found) return this.fail(option, NBD_REP_ERR_UNKNOWN, lookup.reason);
    const negotiated = this.negotiatedExport(exportName, lookup.handle);
    // NBD_INFO_EXPORT goes first and always: QEMU never asks for it yet fails without it.
    const replies = [encodeInfoExport(option, negotiated.exportBytes, negotiated.transmissionFlags)];
    if (infoTypes.includes(NBD_INFO_NAME)) replies.push(encodeInfoText(option, NBD_INFO_NAME, exportName));
    if (infoTypes.includes(NBD_INFO_DESCRIPTION)) {
      const description = await this.describe(exportName);
      if (description !== "") replies.push(encodeInfoText(option, NBD_INFO_DESCRIPTION, description));
    }
    // Sent unasked too: clients that do not understand it must ignore it, and the rest learn our limits.
    replies.push(encodeInfoBlockSize(option, BLOCK_SIZE_MIN_BYTES, BLOCK_SIZE_PREFERRED_BYTES, BLOCK_SIZE_MAX_BYTES));
    if (option === NBD_OPT_GO) {
      const refusal = this.attach(exportName, lookup.handle);
      if (refusal !== null) return this.fail(option, NBD_REP_ERR_UNKNOWN, refusal);
    }
    replies.push(encodeOptionReply(option, NBD_REP_ACK));
    this.writer.send(replies);
    return option === NBD_OPT_GO ? { kind: "transmission", negotiated } : CONTINUE;
  }

  private async listMetaContext(data: Buffer): Promise<OptionOutcome> {
    const option = NBD_OPT_LIST_META_CONTEXT;
    const request = decodeMetaContextRequest(data);
    if (!request.ok) return this.fail(option, NBD_REP_ERR_INVALID, request.reason);
    const lookup = await this.lookUp(request.value.exportName);
    if (!lookup.found) return this.fail(option, NBD_REP_ERR_UNKNOWN, lookup.reason);
    const matched = contextsToList(request.value.queries, await this.comparisonBases(request.value.exportName));
    if (!matched.ok) return this.fail(option, NBD_REP_ERR_INVALID, matched.reason);
    // Ids in a list reply are reserved; the spec says to send zero.
    const replies = matched.contexts.map((context) => encodeMetaContextReply(option, 0, context));
    replies.push(encodeOptionReply(option, NBD_REP_ACK));
    this.writer.send(replies);
    return CONTINUE;
  }

  private async setMetaContext(data: Buffer): Promise<OptionOutcome> {
    const option = NBD_OPT_SET_META_CONTEXT;
    // A SET replaces the previous selection even when it fails.
    this.selection = null;
    if (!this.structuredReplies) {
      return this.fail(option, NBD_REP_ERR_INVALID, "NBD_OPT_SET_META_CONTEXT needs structured replies first");
    }
    const request = decodeMetaContextRequest(data);
    if (!request.ok) return this.fail(option, NBD_REP_ERR_INVALID, request.reason);
    const { exportName, queries } = request.value;
    const lookup = await this.lookUp(exportName);
    if (!lookup.found) return this.fail(option, NBD_REP_ERR_UNKNOWN, lookup.reason);
    const matched = contextsToSelect(queries);
    if (!matched.ok) return this.fail(option, NBD_REP_ERR_INVALID, matched.reason);
    const contexts = await this.select(exportName, matched.requested);
    if (contexts === null) {
      return this.fail(option, NBD_REP_ERR_TOO_BIG, `more than ${META_CONTEXTS_SELECTED_MAX} metadata contexts selected at once`);
    }
    const replies = contexts.map((context) => encodeMetaContextReply(option, context.id, context.name));
    replies.push(encodeOptionReply(option, NBD_REP_ACK));
    this.writer.send(replies);
    this.selection = { exportName, contexts };
    return CONTINUE;
  }

  /**
   * The requested contexts that exist, with their ids: base:allocation under its own, bitmaps
   * after it in query order. A bitmap the catalog does not offer is skipped, as the spec asks
   * for unknown contexts. Null when more than META_CONTEXTS_SELECTED_MAX would be selected.
   */
  private async select(exportName: string, requested: readonly RequestedContext[]): Promise<SelectedContext[] | null> {
    const contexts: SelectedContext[] = [];
    let nextId = BASE_ALLOCATION_CONTEXT_ID + 1;
    // Bounded by the queries, which the option's size bounds; and we stop one past the limit.
    for (const request of requested) {
      if (request.kind === "allocation") {
        contexts.unshift({ id: BASE_ALLOCATION_CONTEXT_ID, name: BASE_ALLOCATION_CONTEXT, kind: "allocation" });
      } else {
        const tracker = await this.tracker(exportName, request.baseName);
        if (tracker === null) continue;
        contexts.push({ id: nextId++, name: dirtyBitmapContext(request.baseName), kind: "dirty-bitmap", tracker });
      }
      if (contexts.length > META_CONTEXTS_SELECTED_MAX) return null;
    }
    return contexts;
  }

  /** The volumes the export can be compared with; none when the catalog cannot say. */
  private async comparisonBases(exportName: string): Promise<string[]> {
    const { catalog } = this.environment;
    try {
      return (await catalog.comparisonBases?.(exportName)) ?? [];
    } catch (error) {
      // Dirty bitmaps are extra: failing to find them must not fail the option.
      if (!(error instanceof ThinpError)) throw error;
      this.environment.log("warn", `cannot list the volumes '${exportName}' compares with: ${error.message}`);
      return [];
    }
  }

  private async tracker(exportName: string, baseName: string): Promise<ChangeTracker | null> {
    const { catalog } = this.environment;
    try {
      return (await catalog.compare?.(exportName, baseName)) ?? null;
    } catch (error) {
      if (!(error instanceof ThinpError)) throw error;
      this.environment.log("warn", `cannot compare '${exportName}' with '${baseName}': ${error.message}`);
      return null;
    }
  }

  private negotiatedExport(exportName: string, handle: VolumeHandle): NegotiatedExport {
    const exportBytes = handle.sizeBytes;
    assert(Number.isSafeInteger(exportBytes) && exportBytes >= 0, `export size ${exportBytes}`);
    const readOnly = this.environment.serverReadOnly || handle.readOnly;
    // Block status is only for the export the contexts were selected on.
    const contexts = this.selection !== null && this.selection.exportName === exportName ? this.selection.contexts : [];
    return {
      exportName,
      handle,
      exportBytes,
      readOnly,
      transmissionFlags: transmissionFlags(readOnly, this.structuredReplies),
      structuredReplies: this.structuredReplies,
      contexts,
    };
  }

  /** The export's handle; an engine error opening it is reported like a missing export. */
  private async lookUp(exportName: string): Promise<Lookup> {
    let handle: VolumeHandle | null;
    try {
      handle = await this.environment.catalog.open(exportName);
    } catch (error) {
      if (!(error instanceof ThinpError)) throw error;
      this.environment.log("warn", `cannot open export '${exportName}': ${error.message}`);
      return { found: false, reason: `export '${exportName}' is not available: ${error.message}` };
    }
    return handle === null ? { found: false, reason: `no export named '${exportName}'` } : { found: true, handle };
  }

  /**
   * Registers the coming transmission with the catalog; null on success, else why not.
   * Whoever receives the negotiated export must detach it (the connection does, once).
   */
  private attach(exportName: string, handle: VolumeHandle): string | null {
    try {
      this.environment.catalog.attach?.(exportName, handle);
      return null;
    } catch (error) {
      if (!(error instanceof ThinpError)) throw error;
      return `export '${exportName}' is not available: ${error.message}`;
    }
  }

  private async describe(exportName: string): Promise<string> {
    try {
      return (await this.environment.catalog.list()).find((listing) => listing.name === exportName)?.description ?? "";
    } catch (error) {
      // The description is a courtesy; failing to find it must not fail the option.
      if (!(error instanceof ThinpError)) throw error;
      return "";
    }
  }
}
