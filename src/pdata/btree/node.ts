// A B+tree node in one metadata block (formats/metadata.md, "B-tree nodes"): the block
// header, then kind, entry count, capacity and value size (NODE_HEADER below), then
// max-entries u64 keys, then max-entries values. Keys are strictly increasing. An internal
// node's values are child block indexes, and its key i is no greater than every key below
// child i.

import { CorruptBlockError } from "../../errors.js";
import { assert } from "../../io/assert.js";
import { defineLayout } from "../../io/byte-layout.js";
import { readU64, writeU64 } from "../../io/integers.js";
import { BLOCK_HEADER_BYTES, METADATA_BLOCK_BYTES } from "../block-format.js";
import { NODE_ENTRIES_MIN, NODE_VALUE_BYTES_MAX } from "../limits.js";

export const NODE_HEADER_BYTES = 32;
export const KEY_BYTES = 8;
export const CHILD_VALUE_BYTES = 8;

/** The fixed part of a node; its keys start at NODE_HEADER_BYTES. */
export const NODE_HEADER = defineLayout("node header", NODE_HEADER_BYTES, {
  blockHeader: { offset: 0, bytes: BLOCK_HEADER_BYTES },
  kind: { offset: 16, bytes: 4 },
  count: { offset: 20, bytes: 4 },
  maxEntries: { offset: 24, bytes: 4 },
  valueBytes: { offset: 28, bytes: 4 },
});
// Read on every step of every tree walk: plain numbers, read as u32s below.
const KIND_AT = NODE_HEADER.kind.offset;
const COUNT_AT = NODE_HEADER.count.offset;
const MAX_ENTRIES_AT = NODE_HEADER.maxEntries.offset;
const VALUE_BYTES_AT = NODE_HEADER.valueBytes.offset;
assert(
  [NODE_HEADER.kind, NODE_HEADER.count, NODE_HEADER.maxEntries, NODE_HEADER.valueBytes].every((field) => field.bytes === 4),
  "node header fields are u32s",
);

export enum NodeKind {
  Internal = 1,
  Leaf = 2,
}

export function maxEntriesFor(valueBytes: number): number {
  return Math.floor((METADATA_BLOCK_BYTES - NODE_HEADER_BYTES) / (KEY_BYTES + valueBytes));
}

/** Where a node's values start: after its keys, whose number is its capacity. */
export function nodeValuesOffset(maxEntries: number): number {
  return NODE_HEADER_BYTES + KEY_BYTES * maxEntries;
}

// Every tree this engine keeps, down to the volume table's 256-byte records, gets nodes its
// splits and merges work in.
assert(maxEntriesFor(NODE_VALUE_BYTES_MAX) >= NODE_ENTRIES_MIN, "nodes of the largest value hold enough entries");
assert(maxEntriesFor(CHILD_VALUE_BYTES) >= NODE_ENTRIES_MIN, "internal nodes hold enough children");

/** A typed view over a node's block; reading it never copies, writing changes the block. */
export class NodeView {
  constructor(
    readonly block: Buffer,
    readonly blockIndex: number,
  ) {}

  static format(block: Buffer, blockIndex: number, kind: NodeKind, valueBytes: number): NodeView {
    assert(valueBytes > 0 && valueBytes <= NODE_VALUE_BYTES_MAX, `node of ${valueBytes}-byte values`);
    block.fill(0, BLOCK_HEADER_BYTES);
    block.writeUInt32LE(kind, KIND_AT);
    block.writeUInt32LE(0, COUNT_AT);
    block.writeUInt32LE(maxEntriesFor(valueBytes), MAX_ENTRIES_AT);
    block.writeUInt32LE(valueBytes, VALUE_BYTES_AT);
    return new NodeView(block, blockIndex);
  }

  /** Checks the header of a node just read; the checksum was verified already. */
  static open(block: Buffer, blockIndex: number, expectedValueBytes: number): NodeView {
    const node = new NodeView(block, blockIndex);
    const kind = block.readUInt32LE(KIND_AT);
    if (kind !== NodeKind.Internal && kind !== NodeKind.Leaf) throw new CorruptBlockError(blockIndex, "bad-node", `node kind ${kind}`);
    const valueBytes = kind === NodeKind.Internal ? CHILD_VALUE_BYTES : expectedValueBytes;
    if (node.valueBytes !== valueBytes) {
      throw new CorruptBlockError(blockIndex, "bad-node", `node holds ${node.valueBytes}-byte values, ${valueBytes} expected`);
    }
    if (node.maxEntries !== maxEntriesFor(valueBytes))
      throw new CorruptBlockError(blockIndex, "bad-node", `node capacity ${node.maxEntries}`);
    if (node.count > node.maxEntries)
      throw new CorruptBlockError(blockIndex, "bad-node", `node holds ${node.count} of ${node.maxEntries} entries`);
    return node;
  }

  get kind(): NodeKind {
    return this.block.readUInt32LE(KIND_AT);
  }
  get isLeaf(): boolean {
    return this.kind === NodeKind.Leaf;
  }
  get count(): number {
    return this.block.readUInt32LE(COUNT_AT);
  }
  set count(value: number) {
    assert(value >= 0 && value <= this.maxEntries, `node ${this.blockIndex} count ${value}`);
    this.block.writeUInt32LE(value, COUNT_AT);
  }
  get maxEntries(): number {
    return this.block.readUInt32LE(MAX_ENTRIES_AT);
  }
  get valueBytes(): number {
    return this.block.readUInt32LE(VALUE_BYTES_AT);
  }
  get isFull(): boolean {
    return this.count === this.maxEntries;
  }

  private valuesOffset(): number {
    return nodeValuesOffset(this.maxEntries);
  }

  keyAt(index: number): number {
    const key = readU64(this.block, NODE_HEADER_BYTES + index * KEY_BYTES);
    if (!Number.isSafeInteger(key)) throw new CorruptBlockError(this.blockIndex, "bad-node", `key ${index} out of range`);
    return key;
  }

  setKey(index: number, key: number): void {
    writeU64(this.block, NODE_HEADER_BYTES + index * KEY_BYTES, key);
  }

  valueAt(index: number): Buffer {
    const at = this.valuesOffset() + index * this.valueBytes;
    return this.block.subarray(at, at + this.valueBytes);
  }

  /** Whether value `index` here and value `otherIndex` of `other` are the same bytes; reads them in place. */
  valueEquals(index: number, other: NodeView, otherIndex: number): boolean {
    const bytes = this.valueBytes;
    const at = this.valuesOffset() + index * bytes;
    const otherAt = other.valuesOffset() + otherIndex * bytes;
    return this.block.compare(other.block, otherAt, otherAt + bytes, at, at + bytes) === 0;
  }

  childAt(index: number): number {
    const child = readU64(this.valueAt(index), 0);
    if (!Number.isSafeInteger(child))
      throw new CorruptBlockError(this.blockIndex, "pointer-out-of-range", `child pointer ${index} out of range`);
    return child;
  }

  setValue(index: number, value: Uint8Array): void {
    assert(value.length === this.valueBytes, `value of ${value.length} bytes in node of ${this.valueBytes}`);
    this.block.set(value, this.valuesOffset() + index * this.valueBytes);
  }

  setChild(index: number, child: number): void {
    writeU64(this.valueAt(index), 0, child);
  }

  /** Index of the first key >= `key`, or `count`. */
  lowerBound(key: number): number {
    let low = 0;
    let high = this.count;
    while (low < high) {
      const mid = (low + high) >>> 1;
      if (this.keyAt(mid) < key) low = mid + 1;
      else high = mid;
    }
    return low;
  }

  /** For an internal node: the child whose range holds `key` (the first child for smaller keys). */
  childIndexFor(key: number): number {
    const index = this.lowerBound(key);
    if (index < this.count && this.keyAt(index) === key) return index;
    return Math.max(0, index - 1);
  }

  insertAt(index: number, key: number, value: Uint8Array): void {
    const count = this.count;
    assert(count < this.maxEntries, `insert into full node ${this.blockIndex}`);
    assert(index >= 0 && index <= count, `insert position ${index} of ${count}`);
    this.shiftEntries(index, index + 1, count - index);
    this.count = count + 1;
    this.setKey(index, key);
    this.setValue(index, value);
  }

  removeAt(index: number): void {
    const count = this.count;
    assert(index >= 0 && index < count, `remove position ${index} of ${count}`);
    this.shiftEntries(index + 1, index, count - index - 1);
    this.count = count - 1;
  }

  /** Moves entries [from, count) of this node to the start of the empty node `target`. */
  moveTailTo(from: number, target: NodeView): void {
    const count = this.count;
    const moved = count - from;
    assert(target.count === 0 && target.valueBytes === this.valueBytes, "split target must be empty and alike");
    this.block.copy(target.block, NODE_HEADER_BYTES, NODE_HEADER_BYTES + from * KEY_BYTES, NODE_HEADER_BYTES + count * KEY_BYTES);
    const vo = this.valuesOffset();
    this.block.copy(target.block, vo, vo + from * this.valueBytes, vo + count * this.valueBytes);
    target.count = moved;
    this.count = from;
  }

  /** Appends every entry of `source` (whose keys are all greater) to this node. */
  appendAll(source: NodeView): void {
    const count = this.count;
    const added = source.count;
    assert(count + added <= this.maxEntries, "merge overflows node");
    source.block.copy(this.block, NODE_HEADER_BYTES + count * KEY_BYTES, NODE_HEADER_BYTES, NODE_HEADER_BYTES + added * KEY_BYTES);
    const vo = this.valuesOffset();
    source.block.copy(this.block, vo + count * this.valueBytes, vo, vo + added * this.valueBytes);
    this.count = count + added;
  }

  private shiftEntries(from: number, to: number, length: number): void {
    if (length <= 0) return;
    this.block.copy(
      this.block,
      NODE_HEADER_BYTES + to * KEY_BYTES,
      NODE_HEADER_BYTES + from * KEY_BYTES,
      NODE_HEADER_BYTES + (from + length) * KEY_BYTES,
    );
    const vo = this.valuesOffset();
    const vb = this.valueBytes;
    this.block.copy(this.block, vo + to * vb, vo + from * vb, vo + (from + length) * vb);
  }
}
