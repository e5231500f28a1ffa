// The byte tables in formats/ are the spec; the layouts in the code are what reads and writes
// the bytes. This test parses every `| offset | size | field |` table in formats/*.md and
// holds each row against the code's layout for that struct, so neither can change alone.
// A failure names the document, the line and the row that disagrees. The limit tables
// (`| name | value |`, `| limit | value | ... |`) are held against the limits modules too.

import { readFileSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import type { Field, Layout } from "../src/io/byte-layout.js";
import { BLOCK_HEADER, METADATA_BLOCK_BYTES } from "../src/pdata/block-format.js";
import { CHILD_VALUE_BYTES, KEY_BYTES, NODE_HEADER, NODE_HEADER_BYTES, maxEntriesFor, nodeValuesOffset } from "../src/pdata/btree/node.js";
import { BITMAP_LAYOUT, INDEX_LAYOUT, OVERFLOW_ENTRY, OVERFLOW_LAYOUT } from "../src/pdata/space-map-format.js";
import * as nbdLimits from "../src/nbd/limits.js";
import * as pdataLimits from "../src/pdata/limits.js";
import * as thinLimits from "../src/thin/limits.js";
import { DATA_BLOCK_BYTES, DATA_PATH_BYTES_MAX } from "../src/thin/limits.js";
import { MAPPING_DATA_BLOCK_BITS, MAPPING_VALUE_BYTES } from "../src/thin/mapping-value.js";
import { NAME_INDEX_VALUE_BYTES } from "../src/thin/names.js";
import { SPACE_MAP_ROOT_LAYOUT, SUPERBLOCK_LAYOUT } from "../src/thin/superblock.js";
import { VOLUME_RECORD_BYTES, VOLUME_RECORD_LAYOUT } from "../src/thin/volume-record.js";
import { SEND_END_LAYOUT, SEND_HEADER_LAYOUT, SEND_RECORD_LAYOUT } from "../src/thin/send-stream.js";
import {
  DM_BLOCK_POINTER_BYTES,
  DM_BLOCK_TIME_BYTES,
  DM_DEVICE_DETAILS_BYTES,
  DM_DEVICE_DETAILS_LAYOUT,
  DM_KEY_BYTES,
  DM_METADATA_BLOCK_BYTES,
  DM_NODE_HEADER,
  DM_NODE_HEADER_BYTES,
  DM_SPACE_MAP_ROOT_LAYOUT,
  DM_SUPERBLOCK_LAYOUT,
} from "../src/thin/adopt/dm-metadata-format.js";

const FORMATS_DIR = join(import.meta.dirname, "..", "formats");

interface DocRow {
  line: number;
  text: string;
  offset: string;
  size: string;
}

interface DocTable {
  file: string;
  line: number;
  /** The nearest heading, then the bold label of the paragraph just above, if any. */
  title: string;
  rows: DocRow[];
}

const OFFSET_TABLE_HEADER = /^\|\s*offset\s*\|\s*size\s*\|\s*field\s*\|\s*$/;

function parseOffsetTables(file: string, text: string): DocTable[] {
  const lines = text.split("\n");
  const tables: DocTable[] = [];
  let heading = "";
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i] ?? "";
    const headingMatch = /^#+\s+(.*)$/.exec(line);
    if (headingMatch) heading = headingMatch[1] ?? "";
    if (!OFFSET_TABLE_HEADER.test(line)) continue;
    const table: DocTable = { file, line: i + 1, title: heading + captionAbove(lines, i), rows: [] };
    for (let j = i + 2; j < lines.length && (lines[j] ?? "").startsWith("|"); j++) {
      const cells = (lines[j] ?? "")
        .split("|")
        .slice(1, -1)
        .map((cell) => cell.trim());
      table.rows.push({ line: j + 1, text: (lines[j] ?? "").trim(), offset: cells[0] ?? "", size: cells[1] ?? "" });
    }
    tables.push(table);
  }
  return tables;
}

/** " / Label" when the paragraph right above the table starts with a bold label. */
function captionAbove(lines: string[], tableLine: number): string {
  let i = tableLine - 1;
  while (i >= 0 && (lines[i] ?? "").trim() === "") i--;
  let start = i;
  while (start > 0 && (lines[start - 1] ?? "").trim() !== "" && !(lines[start - 1] ?? "").startsWith("#")) start--;
  const label = /^\*\*([^*]+)\*\*/.exec((lines[start] ?? "").trim());
  return start <= i && label ? ` / ${label[1]}` : "";
}

const TYPE_BYTES: Record<string, number> = { u8: 1, u16: 2, u32: 4, u64: 8 };

/** Evaluates a cell such as `32`, `u64`, `*L*`, `8 × max` or `32 + 8 × max`. */
function evaluateCell(cell: string, variables: Record<string, number>): number {
  const text = cell
    .replace(/\*([^*]+)\*/g, "$1")
    .replace(/`/g, "")
    .trim();
  const typeBytes = TYPE_BYTES[text];
  if (typeBytes !== undefined) return typeBytes;
  const tokens = text.match(/\d+|[A-Za-z]+(?: [A-Za-z]+)*|[+×*−\-/()]/g) ?? [];
  let at = 0;
  const fail = (why: string): never => {
    throw new Error(`cannot read "${cell}": ${why}`);
  };
  const primary = (): number => {
    const token = tokens[at++] ?? fail("it ends early");
    if (token === "(") {
      const value = sum();
      if (tokens[at++] !== ")") fail("a parenthesis is not closed");
      return value;
    }
    if (/^\d+$/.test(token)) return Number(token);
    const value = variables[token];
    return value ?? fail(`"${token}" is not known here (known: ${Object.keys(variables).join(", ") || "none"})`);
  };
  const product = (): number => {
    let value = primary();
    while (tokens[at] === "×" || tokens[at] === "*" || tokens[at] === "/") {
      const op = tokens[at++];
      const right = primary();
      value = op === "/" ? value / right : value * right;
    }
    return value;
  };
  const sum = (): number => {
    let value = product();
    while (tokens[at] === "+" || tokens[at] === "−" || tokens[at] === "-") {
      const op = tokens[at++];
      const right = product();
      value = op === "+" ? value + right : value - right;
    }
    return value;
  };
  const value = sum();
  if (at !== tokens.length) fail(`unexpected "${tokens[at]}"`);
  return value;
}

interface CodeLayout {
  name: string;
  fields: Layout;
  /** Values of the names a table's cells use, such as `max` or `L`. */
  variables: Record<string, number>;
}

/** Every disagreement between a document table and a code layout, one message per row or field. */
function compareTable(table: DocTable, code: CodeLayout): string[] {
  const where = (line: number) => `${table.file}:${line} (${table.title})`;
  const problems: string[] = [];
  const fieldsByOffset = new Map<number, [string, Field]>();
  for (const [name, field] of Object.entries(code.fields)) fieldsByOffset.set(field.offset, [name, field]);
  const documented = new Set<number>();
  for (const row of table.rows) {
    let offset: number;
    let size: number;
    try {
      offset = evaluateCell(row.offset, code.variables);
      size = evaluateCell(row.size, code.variables);
    } catch (error) {
      problems.push(`${where(row.line)}: row \`${row.text}\`: ${(error as Error).message}`);
      continue;
    }
    documented.add(offset);
    const match = fieldsByOffset.get(offset);
    if (!match) {
      problems.push(`${where(row.line)}: row \`${row.text}\` puts a field at offset ${offset}; no field of ${code.name} starts there`);
    } else if (match[1].bytes !== size) {
      problems.push(
        `${where(row.line)}: row \`${row.text}\` gives ${size} bytes at offset ${offset}; ${code.name}.${match[0]} has ${match[1].bytes}`,
      );
    }
  }
  for (const [offset, [name, field]] of fieldsByOffset) {
    if (!documented.has(offset))
      problems.push(`${where(table.line)}: no row for ${code.name}.${name} (offset ${offset}, ${field.bytes} bytes)`);
  }
  return problems;
}

/** A node's whole layout for one value size: the fixed header, then keys and values. */
function nodeLayout(valueBytes: number): CodeLayout {
  const max = maxEntriesFor(valueBytes);
  return {
    name: `a node of ${valueBytes}-byte values`,
    fields: {
      ...NODE_HEADER,
      keys: { offset: NODE_HEADER_BYTES, bytes: KEY_BYTES * max },
      values: { offset: nodeValuesOffset(max), bytes: valueBytes * max },
    },
    variables: { max, "value size": valueBytes },
  };
}

/**
 * A dm-thin node's layout for one value size, with the max entries the kernel and
 * thin_restore give it (calc_max_entries in dm-btree.c); the reader takes each node's own.
 */
function dmNodeLayout(valueBytes: number): CodeLayout {
  const max = 3 * Math.floor(Math.floor((DM_METADATA_BLOCK_BYTES - DM_NODE_HEADER_BYTES) / (DM_KEY_BYTES + valueBytes)) / 3);
  return {
    name: `a dm-thin node of ${valueBytes}-byte values`,
    fields: {
      ...DM_NODE_HEADER,
      keys: { offset: DM_NODE_HEADER_BYTES, bytes: DM_KEY_BYTES * max },
      values: { offset: DM_NODE_HEADER_BYTES + DM_KEY_BYTES * max, bytes: valueBytes * max },
    },
    variables: { max, "value size": valueBytes },
  };
}

const DM_NODE_VALUE_SIZES = [...new Set([DM_BLOCK_POINTER_BYTES, DM_BLOCK_TIME_BYTES, DM_DEVICE_DETAILS_BYTES])];

const NODE_VALUE_SIZES = [...new Set([CHILD_VALUE_BYTES, MAPPING_VALUE_BYTES, NAME_INDEX_VALUE_BYTES, VOLUME_RECORD_BYTES])];

/** Each table in formats/ with the code layouts it describes, by the table's title. */
const LAYOUTS_BY_TABLE: Record<string, CodeLayout[]> = {
  "metadata.md: Every block: the 16-byte header": [{ name: "BLOCK_HEADER", fields: BLOCK_HEADER, variables: {} }],
  "metadata.md: Superblock (blocks 0 and 1)": [
    { name: "SUPERBLOCK_LAYOUT", fields: SUPERBLOCK_LAYOUT, variables: { L: DATA_PATH_BYTES_MAX } },
  ],
  "metadata.md: Superblock (blocks 0 and 1) / Space-map root": [
    { name: "SPACE_MAP_ROOT_LAYOUT", fields: SPACE_MAP_ROOT_LAYOUT, variables: {} },
  ],
  "metadata.md: B-tree nodes": NODE_VALUE_SIZES.map(nodeLayout),
  "metadata.md: Volume records (256 bytes)": [
    { name: "VOLUME_RECORD_LAYOUT", fields: VOLUME_RECORD_LAYOUT, variables: { L: VOLUME_RECORD_LAYOUT.body.bytes } },
  ],
  "metadata.md: Space maps / Bitmap block": [{ name: "BITMAP_LAYOUT", fields: BITMAP_LAYOUT, variables: {} }],
  "metadata.md: Space maps / Index block": [{ name: "INDEX_LAYOUT", fields: INDEX_LAYOUT, variables: {} }],
  "metadata.md: Space maps / Overflow block": [{ name: "OVERFLOW_LAYOUT", fields: OVERFLOW_LAYOUT, variables: {} }],
  "metadata.md: Space maps / Overflow entry": [{ name: "OVERFLOW_ENTRY", fields: OVERFLOW_ENTRY, variables: {} }],
  "dm-thin-metadata.md: Superblock (block 0)": [{ name: "DM_SUPERBLOCK_LAYOUT", fields: DM_SUPERBLOCK_LAYOUT, variables: {} }],
  "dm-thin-metadata.md: Superblock (block 0) / Space-map root": [
    { name: "DM_SPACE_MAP_ROOT_LAYOUT", fields: DM_SPACE_MAP_ROOT_LAYOUT, variables: {} },
  ],
  "dm-thin-metadata.md: B-tree nodes": DM_NODE_VALUE_SIZES.map(dmNodeLayout),
  "dm-thin-metadata.md: Device details (24 bytes)": [{ name: "DM_DEVICE_DETAILS_LAYOUT", fields: DM_DEVICE_DETAILS_LAYOUT, variables: {} }],
  "send-stream.md: Header (128 bytes)": [{ name: "SEND_HEADER_LAYOUT", fields: SEND_HEADER_LAYOUT, variables: {} }],
  "send-stream.md: Records": [{ name: "SEND_RECORD_LAYOUT", fields: SEND_RECORD_LAYOUT, variables: {} }],
  "send-stream.md: End record payload (40 bytes)": [{ name: "SEND_END_LAYOUT", fields: SEND_END_LAYOUT, variables: {} }],
};

function readFormats(): { file: string; text: string }[] {
  return readdirSync(FORMATS_DIR)
    .filter((name) => name.endsWith(".md"))
    .sort()
    .map((name) => ({ file: `formats/${name}`, text: readFileSync(join(FORMATS_DIR, name), "utf8") }));
}

const documents = readFormats();

/** The value a test needs, or a failure saying what the document lacks. */
function required<T>(value: T | null | undefined, what: string): T {
  if (value === null || value === undefined) throw new Error(`not found: ${what}`);
  return value;
}

function documentText(file: string): string {
  return required(
    documents.find((document) => document.file === file),
    file,
  ).text;
}

/** The numbers a pattern captures in a document, or a failure naming what was looked for. */
function capturedNumbers(pattern: RegExp, text: string, what: string): number[] {
  return required(pattern.exec(text), what).slice(1).map(Number);
}

function superblockTableOf(text: string): DocTable {
  return required(
    parseOffsetTables("formats/metadata.md", text).find((table) => table.title === "Superblock (blocks 0 and 1)"),
    "the superblock table",
  );
}

const SUPERBLOCK_CODE = required(LAYOUTS_BY_TABLE["metadata.md: Superblock (blocks 0 and 1)"]?.[0], "the superblock layout");
const tables = documents.flatMap(({ file, text }) => parseOffsetTables(file, text));
const tableKey = (table: DocTable) => `${table.file.replace("formats/", "")}: ${table.title}`;

describe("formats/ byte tables match the code's layouts", () => {
  it("every byte table in formats/ is checked, and every layout has its table", () => {
    const found = tables.map(tableKey);
    expect(
      found.filter((key) => !(key in LAYOUTS_BY_TABLE)),
      "tables no layout is checked against",
    ).toEqual([]);
    expect(
      Object.keys(LAYOUTS_BY_TABLE).filter((key) => !found.includes(key)),
      "layouts whose table is gone",
    ).toEqual([]);
    expect(new Set(found).size, "two tables under one title").toBe(found.length);
  });

  for (const table of tables) {
    it(`${tableKey(table)} (line ${table.line})`, () => {
      const layouts = LAYOUTS_BY_TABLE[tableKey(table)] ?? [];
      expect(layouts.flatMap((code) => compareTable(table, code))).toEqual([]);
    });
  }

  it("a row that disagrees is named by file, line and text", () => {
    const doctored = documentText("formats/metadata.md").replace(
      "| 48 | u64 | transaction id of this commit |",
      "| 48 | u32 | transaction id of this commit |",
    );
    const problems = compareTable(superblockTableOf(doctored), SUPERBLOCK_CODE);
    expect(problems).toHaveLength(1);
    expect(problems[0]).toMatch(
      /^formats\/metadata\.md:\d+ \(Superblock \(blocks 0 and 1\)\): row `\| 48 \| u32 \| transaction id of this commit \|` gives 4 bytes at offset 48; SUPERBLOCK_LAYOUT\.transactionId has 8$/,
    );
  });

  it("a field the document leaves out is named with its layout", () => {
    const doctored = documentText("formats/metadata.md").replace("| 60 | u32 | reserved, 0 |\n", "");
    const problems = compareTable(superblockTableOf(doctored), SUPERBLOCK_CODE);
    expect(problems).toEqual([expect.stringMatching(/no row for SUPERBLOCK_LAYOUT\.reserved60 \(offset 60, 4 bytes\)$/)]);
  });
});

describe("formats/metadata.md prose matches the code", () => {
  const metadata = documentText("formats/metadata.md");

  it("the checksum covers the block from the end of its own field", () => {
    const covered = capturedNumbers(/CRC32C \(Castagnoli\) of bytes (\d+)\.\.(\d+)/, metadata, "the header table's checksum row");
    expect(covered).toEqual([BLOCK_HEADER.checksum.offset + BLOCK_HEADER.checksum.bytes, METADATA_BLOCK_BYTES - 1]);
  });

  it("a node's capacity is the formula the node table gives", () => {
    const formula = capturedNumbers(
      /max entries = ⌊\((\d+) − (\d+)\) \/ \((\d+) \+ value size\)⌋/,
      metadata,
      "the node table's max entries row",
    );
    expect(formula).toEqual([METADATA_BLOCK_BYTES, NODE_HEADER_BYTES, KEY_BYTES]);
  });

  it("a mapping value splits its bits where the code does", () => {
    const bits = capturedNumbers(/Bits 0\.\.(\d+): the data block index\. Bits (\d+)\.\.(\d+):/, metadata, "the mapping values section");
    expect(bits).toEqual([MAPPING_DATA_BLOCK_BITS - 1, MAPPING_DATA_BLOCK_BITS, 8 * MAPPING_VALUE_BYTES - 1]);
  });
});

/** A limit table's rows: the names in the first cell, the value text in the second. */
function parseLimitTables(text: string): { line: number; names: string[]; value: string }[] {
  const lines = text.split("\n");
  const rows = [];
  for (let i = 0; i < lines.length; i++) {
    if (!/^\|\s*(name|limit)\s*\|\s*value\s*\|/.test(lines[i] ?? "")) continue;
    for (let j = i + 2; j < lines.length && (lines[j] ?? "").startsWith("|"); j++) {
      const cells = (lines[j] ?? "")
        .split("|")
        .slice(1, -1)
        .map((cell) => cell.trim());
      const names = [...(cells[0] ?? "").matchAll(/`([A-Z][A-Z0-9_]+)`/g)].map((match) => match[1] ?? "");
      rows.push({ line: j + 1, names, value: cells[1] ?? "" });
    }
  }
  return rows;
}

const UNIT_BYTES: Record<string, number> = { KiB: 2 ** 10, MiB: 2 ** 20, GiB: 2 ** 30, TiB: 2 ** 40, PiB: 2 ** 50 };

/** The number a value cell starts with: `65536`, `2^24 − 1 snapshots`, `32 MiB for READ`, `2^32 data blocks`. */
function leadingValue(text: string): number | null {
  const match = /^(\d+(?:\^\d+)?(?:\s*[×+−]\s*\d+(?:\^\d+)?)*)\s*(KiB|MiB|GiB|TiB|PiB)?\s*(data blocks)?/.exec(text.trim());
  if (!match) return null;
  const expression = (match[1] ?? "").replace(/(\d+)\^(\d+)/g, (_, base: string, power: string) => String(Number(base) ** Number(power)));
  const unit = match[2] ? (UNIT_BYTES[match[2]] ?? 1) : 1;
  return evaluateCell(expression, {}) * unit * (match[3] ? DATA_BLOCK_BYTES : 1);
}

/** The limits a document's table may name, from the modules of the layers it describes. */
const LIMITS_BY_DOCUMENT: Record<string, Record<string, unknown>> = {
  "formats/metadata.md": { ...pdataLimits, ...thinLimits },
  "formats/nbd-protocol.md": { ...nbdLimits },
};

describe("formats/ limit tables match the limits modules", () => {
  for (const { file, text } of documents) {
    const rows = parseLimitTables(text);
    if (rows.length === 0) continue;
    it(`every limit ${file} lists has the value the code gives it`, () => {
      const limits = required(LIMITS_BY_DOCUMENT[file], `the limits modules ${file}'s limit table describes`);
      const problems: string[] = [];
      for (const row of rows) {
        if (row.names.length === 0) problems.push(`${file}:${row.line}: a limit row that names no limit`);
        const values = row.names.length > 1 ? row.value.split(/,\s*/) : [row.value];
        row.names.forEach((name, i) => {
          const documented = leadingValue(values[i] ?? "");
          const actual = limits[name];
          if (typeof actual !== "number") problems.push(`${file}:${row.line}: ${name} is not a limit the code exports`);
          else if (documented !== actual)
            problems.push(`${file}:${row.line}: ${name} is "${values[i]}" (${documented}); the code says ${actual}`);
        });
      }
      expect(problems).toEqual([]);
    });
  }

  it("the metadata file's growth is described with the code's numbers", () => {
    const metadata = documentText("formats/metadata.md").replace(/\s+/g, " ");
    const growth = capturedNumbers(
      /The file starts at (\d+) blocks .*? fewer than (\d+) blocks \(the \*reserve\*, `METADATA_RESERVE_BLOCKS`\) .*? by max\((\d+) blocks, a quarter of the file/,
      metadata,
      "the growth paragraph at the top of formats/metadata.md",
    );
    expect(growth).toEqual([
      pdataLimits.INITIAL_METADATA_BLOCKS,
      pdataLimits.METADATA_RESERVE_BLOCKS,
      pdataLimits.METADATA_GROWTH_BLOCKS_MIN,
    ]);
    expect(pdataLimits.METADATA_GROWTH_FILE_DIVISOR, "a quarter of the file").toBe(4);
  });
});
