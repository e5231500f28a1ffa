// thin_dump's XML (formats/dm-thin-dump.md, "Reading it back") as restore's events, parsed
// as it streams: a chunk of the file at a time, so a dump of millions of mappings never sits
// in memory whole. Every version thin-provisioning-tools 0.9 and 1.x writes: `superblock`,
// `device`, `range_mapping`, `single_mapping`, and 1.x's shared runs, `def` (at the top
// level, named) and `ref` (inside a device: the def's mappings again).

import { createReadStream } from "node:fs";
import { SaxesParser, type SaxesTagPlain } from "saxes";
import { FileMissingError, IoError, ThinpError, type ErrorCode } from "../../errors.js";
import type { DmThinDevice, DmThinEvent, DmThinEventSource, DmThinMapping, DmThinSuperblock } from "./dm-thin-source.js";

/** Mappings one `def` may hold: a def is kept in memory until the dump ends, so it is bounded. */
export const XML_DEF_MAPPINGS_MAX = 1 << 20;

/** Malformed XML, or XML that is not a thin_dump: names the file, line and column. */
export class DumpXmlError extends ThinpError {
  readonly code: ErrorCode = "CORRUPT";
  constructor(
    readonly path: string,
    readonly line: number,
    readonly column: number,
    what: string,
  ) {
    super(`${path}, line ${line}, column ${column}: ${what}`);
  }
}

export class XmlDumpSource implements DmThinEventSource {
  private line = 1;
  private column = 0;

  constructor(
    readonly path: string,
    /** Bytes read so far, for a progress bar. */
    private readonly onBytes: (byteCount: number) => void = () => undefined,
  ) {}

  get position(): string {
    return `${this.path}, line ${this.line}, column ${this.column}`;
  }

  async *events(): AsyncGenerator<DmThinEvent> {
    const parser = new SaxesParser({ position: true, xmlns: false });
    const pending: DmThinEvent[] = [];
    const defs = new Map<string, DmThinMapping[]>();
    let defName: string | null = null;
    let inDevice = false;
    let sawSuperblock = false;
    let failure: Error | null = null;
    const fail = (what: string): never => {
      throw new DumpXmlError(this.path, parser.line, parser.column + 1, what);
    };
    const onMapping = (mapping: DmThinMapping) => {
      if (defName !== null) {
        const run = defs.get(defName)!;
        if (run.length >= XML_DEF_MAPPINGS_MAX) fail(`def '${defName}' holds more than ${XML_DEF_MAPPINGS_MAX} mappings`);
        run.push(mapping);
      } else if (inDevice) pending.push({ kind: "mapping", mapping });
      else fail("a mapping outside any device or def");
    };
    parser.on("error", (error) => {
      failure ??= new DumpXmlError(this.path, parser.line, parser.column + 1, error.message.replace(/^(\S+:)?\d+:\d+: /, ""));
    });
    parser.on("opentag", (tag: SaxesTagPlain) => {
      if (failure) return;
      try {
        const number = (name: string): number => attributeNumber(tag, name, fail);
        switch (tag.name) {
          case "superblock": {
            if (sawSuperblock) fail("a second superblock");
            sawSuperblock = true;
            const superblock: DmThinSuperblock = {
              uuid: typeof tag.attributes.uuid === "string" ? tag.attributes.uuid : "",
              time: number("time"),
              transaction: number("transaction"),
              dataBlockSectors: number("data_block_size"),
              dataBlockCount: number("nr_data_blocks"),
            };
            pending.push({ kind: "superblock", superblock });
            break;
          }
          case "device": {
            if (!sawSuperblock || inDevice || defName !== null) fail("a device outside the superblock, or inside another element");
            inDevice = true;
            const device: DmThinDevice = {
              devId: number("dev_id"),
              mappedBlocks: number("mapped_blocks"),
              transaction: number("transaction"),
              creationTime: number("creation_time"),
              snapTime: number("snap_time"),
            };
            pending.push({ kind: "device", device });
            break;
          }
          case "def": {
            if (!sawSuperblock || inDevice || defName !== null) fail("a def inside a device or another def");
            const name = attributeText(tag, "name", fail);
            if (defs.has(name)) fail(`a second def named '${name}'`);
            defs.set(name, []);
            defName = name;
            break;
          }
          case "ref": {
            if (!inDevice) fail("a ref outside any device");
            const name = attributeText(tag, "name", fail);
            const run = defs.get(name) ?? fail(`a ref to def '${name}', which no def before it names`);
            for (const mapping of run) pending.push({ kind: "mapping", mapping });
            break;
          }
          case "range_mapping":
            onMapping({
              virtualBegin: number("origin_begin"),
              dataBegin: number("data_begin"),
              length: number("length"),
              time: number("time"),
            });
            break;
          case "single_mapping":
            onMapping({ virtualBegin: number("origin_block"), dataBegin: number("data_block"), length: 1, time: number("time") });
            break;
          default:
            fail(`an element <${tag.name}> that thin_dump does not write`);
        }
      } catch (error) {
        failure ??= error as Error;
      }
    });
    parser.on("closetag", (tag) => {
      if (failure) return;
      if (tag.name === "device") {
        inDevice = false;
        pending.push({ kind: "end-device" });
      } else if (tag.name === "def") defName = null;
    });

    const stream = createReadStream(this.path, { encoding: "utf8", highWaterMark: 1 << 16 });
    try {
      for await (const chunk of stream) {
        const text = chunk as string;
        parser.write(text);
        this.onBytes(Buffer.byteLength(text));
        if (failure) throw failure;
        for (const event of pending) {
          yield event;
        }
        this.line = parser.line;
        this.column = parser.column + 1;
        pending.length = 0;
      }
      parser.close();
      if (failure) throw failure;
      for (const event of pending) yield event;
      if (!sawSuperblock) fail("no <superblock>: it is not a thin_dump");
    } catch (error) {
      if (error instanceof ThinpError) throw error;
      const code = (error as NodeJS.ErrnoException).code;
      if (code === "ENOENT") throw new FileMissingError(this.path, "XML dump");
      if (typeof code === "string") throw new IoError(this.path, error);
      throw error;
    } finally {
      stream.destroy();
    }
  }
}

function attributeNumber(tag: SaxesTagPlain, name: string, fail: (what: string) => never): number {
  const text = tag.attributes[name];
  if (typeof text !== "string") return fail(`<${tag.name}> has no ${name}`);
  if (!/^\d+$/.test(text) || !Number.isSafeInteger(Number(text))) return fail(`<${tag.name}> ${name}="${text}" is not a whole number`);
  return Number(text);
}

function attributeText(tag: SaxesTagPlain, name: string, fail: (what: string) => never): string {
  const text = tag.attributes[name];
  if (typeof text !== "string" || text.length === 0) return fail(`<${tag.name}> has no ${name}`);
  return text;
}
