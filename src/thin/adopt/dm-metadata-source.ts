// A dm-thin pool's metadata read from the kernel's binary format itself, for a host without
// thin-provisioning-tools (formats/dm-thin-metadata.md). It walks the device-details tree and
// the top level of the mapping tree side by side, both keyed by dev_id, and for each device
// its own mapping tree, depth-first: one block per tree level is held at a time, so memory
// does not grow with the pool. Every block is verified as the kernel verifies it.

import { CorruptBlockError } from "../../errors.js";
import { assert } from "../../io/assert.js";
import type { StorageFile } from "../../io/storage-file.js";
import { DM_BTREE_DEPTH_MAX } from "../limits.js";
import {
  DM_BLOCK_POINTER_BYTES,
  DM_BLOCK_TIME_BYTES,
  DM_DEVICE_DETAILS_BYTES,
  DM_METADATA_BLOCK_BYTES,
  DM_SUPERBLOCK_INDEX,
  DmNode,
  decodeBlockTime,
  decodeDeviceDetails,
  decodeDmSuperblock,
  isDmDevId,
  type DmSuperblockFields,
} from "./dm-metadata-format.js";
import type { DmThinEvent, DmThinEventSource, DmThinMapping } from "./dm-thin-source.js";

/** Which tree a walk is in, for messages, and the size of its leaves' values. */
interface TreeSpec {
  path: string;
  leafValueBytes: number;
}

/** A node on the walk's stack: the next child to visit, and the key its range stops short of. */
interface Frame {
  node: DmNode;
  nextEntry: number;
  keyEnd: number;
}

/** One entry of a leaf, as a tree's entries are merged with another's. */
interface LeafEntry {
  node: DmNode;
  entryIndex: number;
  key: number;
}

export class DmMetadataSource implements DmThinEventSource {
  position = `metadata block ${DM_SUPERBLOCK_INDEX}`;
  private superblock: DmSuperblockFields | null = null;
  private fileBlockCount = 0;

  /** `file` is read only, from the first event to the last; the caller closes it. */
  constructor(private readonly file: StorageFile) {}

  async *events(): AsyncGenerator<DmThinEvent> {
    this.fileBlockCount = Math.floor((await this.file.byteLength()) / DM_METADATA_BLOCK_BYTES);
    const superblock = decodeDmSuperblock(await this.readBlock(DM_SUPERBLOCK_INDEX));
    this.superblock = superblock;
    this.position = `metadata block ${DM_SUPERBLOCK_INDEX} (superblock)`;
    this.checkInFile(DM_SUPERBLOCK_INDEX, superblock.detailsRoot, "the device-details tree's root", undefined);
    this.checkInFile(DM_SUPERBLOCK_INDEX, superblock.mappingRoot, "the mapping tree's root", undefined);
    yield {
      kind: "superblock",
      superblock: {
        uuid: superblock.uuid,
        time: superblock.time,
        transaction: superblock.transactionId,
        dataBlockSectors: superblock.dataBlockSectors,
        dataBlockCount: superblock.dataBlockCount,
      },
    };
    const details = this.entries(superblock.detailsRoot, { path: "the device-details tree", leafValueBytes: DM_DEVICE_DETAILS_BYTES });
    const roots = this.entries(superblock.mappingRoot, { path: "the mapping tree's top level", leafValueBytes: DM_BLOCK_POINTER_BYTES });
    for (;;) {
      const [detail, root] = await Promise.all([details.next(), roots.next()]);
      if (detail.done && root.done) return;
      const devId = matchDevice(detail.done ? null : detail.value, root.done ? null : root.value);
      assert(!detail.done && !root.done, "matchDevice throws when one tree ends before the other");
      const found = decodeDeviceDetails(detail.value.node.value(detail.value.entryIndex), devId, detail.value.node.blockIndex);
      this.position = `metadata block ${detail.value.node.blockIndex} (device ${devId}'s details)`;
      yield {
        kind: "device",
        device: {
          devId,
          mappedBlocks: found.mappedBlocks,
          transaction: found.transactionId,
          creationTime: found.creationTime,
          snapTime: found.snapshottedTime,
        },
      };
      const mappingRoot = root.value.node.pointer(root.value.entryIndex);
      this.checkPointer(root.value.node, mappingRoot, `device ${devId}'s mapping tree root`, "the mapping tree's top level");
      yield* this.deviceMappings(devId, mappingRoot);
      yield { kind: "end-device" };
    }
  }

  /** Runs of consecutive virtual and data blocks with one time become one event, as thin_dump's range_mapping. */
  private async *deviceMappings(devId: number, rootIndex: number): AsyncGenerator<DmThinEvent> {
    const { dataBlockCount } = this.required();
    const path = `device ${devId}'s mapping tree`;
    let run: DmThinMapping | null = null;
    let runLeaf = rootIndex;
    for await (const leaf of this.leaves(rootIndex, { path, leafValueBytes: DM_BLOCK_TIME_BYTES })) {
      for (let i = 0; i < leaf.entryCount; i++) {
        const virtualBlock = leaf.key(i);
        const { dataBlock, time } = decodeBlockTime(leaf.value(i));
        if (dataBlock >= dataBlockCount) {
          throw new CorruptBlockError(
            leaf.blockIndex,
            "pointer-out-of-range",
            `virtual block ${virtualBlock} maps data block ${dataBlock}, beyond the pool's ${dataBlockCount} data blocks`,
            path,
          );
        }
        if (run && virtualBlock === run.virtualBegin + run.length && dataBlock === run.dataBegin + run.length && time === run.time) {
          run.length++;
          continue;
        }
        if (run) {
          this.position = `metadata block ${runLeaf} (${path})`;
          yield { kind: "mapping", mapping: run };
        }
        run = { virtualBegin: virtualBlock, dataBegin: dataBlock, length: 1, time };
        runLeaf = leaf.blockIndex;
      }
    }
    if (run) {
      this.position = `metadata block ${runLeaf} (${path})`;
      yield { kind: "mapping", mapping: run };
    }
  }

  private async *entries(rootIndex: number, spec: TreeSpec): AsyncGenerator<LeafEntry> {
    for await (const node of this.leaves(rootIndex, spec)) {
      for (let entryIndex = 0; entryIndex < node.entryCount; entryIndex++) yield { node, entryIndex, key: node.key(entryIndex) };
    }
  }

  /**
   * Each leaf of a tree in key order, depth-first. Besides each node's own checks: every
   * non-root node has entries, its keys lie in the range its parent's keys give it (so no
   * node is reached twice within one tree), leaves are all at one depth, and the depth is
   * bounded. Trees of different devices share nodes after a snapshot; that is not checked.
   */
  private async *leaves(rootIndex: number, spec: TreeSpec): AsyncGenerator<DmNode> {
    const root = await this.readNode(rootIndex, spec);
    if (root.isLeaf) {
      yield root;
      return;
    }
    if (root.entryCount === 0) throw new CorruptBlockError(rootIndex, "bad-node", "an internal node with no entries", spec.path);
    const stack: Frame[] = [{ node: root, nextEntry: 0, keyEnd: Infinity }];
    let leafDepth = -1;
    while (stack.length > 0) {
      const top = stack[stack.length - 1]!;
      if (top.nextEntry === top.node.entryCount) {
        stack.pop();
        continue;
      }
      const entryIndex = top.nextEntry++;
      const keyBegin = top.node.key(entryIndex);
      const keyEnd = entryIndex + 1 < top.node.entryCount ? top.node.key(entryIndex + 1) : top.keyEnd;
      const childIndex = top.node.pointer(entryIndex);
      this.checkPointer(top.node, childIndex, `child ${entryIndex}`, spec.path);
      const depth = stack.length;
      if (depth >= DM_BTREE_DEPTH_MAX) {
        throw new CorruptBlockError(top.node.blockIndex, "loop", `the tree is deeper than ${DM_BTREE_DEPTH_MAX} levels`, spec.path);
      }
      const child = await this.readNode(childIndex, spec);
      checkChildKeys(child, top.node.blockIndex, keyBegin, keyEnd, spec.path);
      if (child.isLeaf ? leafDepth !== -1 && depth !== leafDepth : leafDepth !== -1 && depth >= leafDepth) {
        throw new CorruptBlockError(
          childIndex,
          "bad-node",
          `a ${child.isLeaf ? "leaf" : "internal node"} at depth ${depth}, where the tree's leaves are at depth ${leafDepth}`,
          spec.path,
        );
      }
      if (child.isLeaf) {
        leafDepth = depth;
        yield child;
      } else {
        stack.push({ node: child, nextEntry: 0, keyEnd });
      }
    }
  }

  private checkPointer(node: DmNode, target: number, what: string, path: string): void {
    const { metadataBlockCount } = this.required();
    if (!(target > DM_SUPERBLOCK_INDEX && target < metadataBlockCount)) {
      throw new CorruptBlockError(
        node.blockIndex,
        "pointer-out-of-range",
        `${what} points to block ${target}, not a node of the ${metadataBlockCount}-block metadata device`,
        path,
      );
    }
    this.checkInFile(node.blockIndex, target, what, path);
  }

  /** A pointer the kernel's space map allows, into a copy of the device that is shorter. */
  private checkInFile(referrer: number, target: number, what: string, path: string | undefined): void {
    if (target >= this.fileBlockCount) {
      throw new CorruptBlockError(
        referrer,
        "pointer-out-of-range",
        `${what} points to block ${target}, beyond the end of ${this.file.path} (${this.fileBlockCount} blocks): is the file cut short?`,
        path,
      );
    }
  }

  private async readNode(blockIndex: number, spec: TreeSpec): Promise<DmNode> {
    return DmNode.decode(await this.readBlock(blockIndex), blockIndex, spec.leafValueBytes, spec.path);
  }

  private async readBlock(blockIndex: number): Promise<Buffer> {
    const block = Buffer.alloc(DM_METADATA_BLOCK_BYTES);
    await this.file.read(block, blockIndex * DM_METADATA_BLOCK_BYTES);
    return block;
  }

  private required(): DmSuperblockFields {
    assert(this.superblock !== null, "the superblock is read before any tree");
    return this.superblock;
  }
}

/** A non-root node is never empty, and its keys lie in [keyBegin, keyEnd) of its parent's entry. */
function checkChildKeys(child: DmNode, parentIndex: number, keyBegin: number, keyEnd: number, path: string): void {
  if (child.entryCount === 0) {
    throw new CorruptBlockError(child.blockIndex, "bad-node", `a non-root node with no entries (child of block ${parentIndex})`, path);
  }
  const first = child.key(0);
  const last = child.key(child.entryCount - 1);
  if (first < keyBegin || last >= keyEnd) {
    throw new CorruptBlockError(
      child.blockIndex,
      "bad-node",
      `keys ${first}..${last} lie outside [${keyBegin}, ${keyEnd}), the range block ${parentIndex} gives this child`,
      path,
    );
  }
}

/** Both trees are keyed by dev_id and hold the same devices; the device both name next. */
function matchDevice(detail: LeafEntry | null, root: LeafEntry | null): number {
  const lone = (entry: LeafEntry, has: string, lacks: string): never => {
    throw new CorruptBlockError(entry.node.blockIndex, "bad-record", `device ${entry.key} has ${has} but no ${lacks}`, `the ${has}`);
  };
  if (detail === null) return lone(root!, "mapping tree's top level", "device details");
  if (root === null || detail.key < root.key) return lone(detail, "device-details tree", "mapping tree");
  if (root.key < detail.key) return lone(root, "mapping tree's top level", "device details");
  if (!isDmDevId(detail.key)) {
    throw new CorruptBlockError(
      detail.node.blockIndex,
      "bad-record",
      `key ${detail.key} is not a 24-bit dm-thin device id`,
      "the device-details tree",
    );
  }
  return detail.key;
}
