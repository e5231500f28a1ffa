// `thinp check`: verifies a pool's committed metadata from its files alone. Every block
// reached is checksummed and self-identified, every tree's keys are ordered and within
// their parent's range, every leaf is at the same depth, and every reference count in both
// space maps equals the references actually found. Given a way to look at it, the data file
// too: it must exist and hold every block the pool has.

import { stat } from "node:fs/promises";
import { dirname, resolve } from "node:path";
import { CorruptBlockError, DataFileTruncatedError } from "../errors.js";
import { readU64 } from "../io/integers.js";
import { at, countOne } from "../io/checked-index.js";
import { openLockedMetadataFile } from "./pool-files.js";
import type { StorageFile } from "../io/storage-file.js";
import { BlockType } from "../pdata/block-format.js";
import { verifiedBlockReader, type VerifiedBlockReader } from "../pdata/block-reader.js";
import type { NodeView } from "../pdata/btree/node.js";
import { TreeWalker, type KeyRange, type NodeVisitor } from "../pdata/btree/walker.js";
import { loadSpaceMap } from "../pdata/space-map-store.js";
import { chooseSuperblock } from "../pdata/superblock-choice.js";
import type { RefcountTable } from "../pdata/refcount-table.js";
import { DATA_BLOCK_BYTES, NAME_PROBES_MAX, PROBLEMS_LISTED_MAX, SECTOR_BYTES } from "./limits.js";
import { MAPPING_VALUE_BYTES, decodeMapping } from "./mapping-value.js";
import { NAME_INDEX_VALUE_BYTES, nameHash } from "./names.js";
import { SUPERBLOCK_SLOTS, decodeSuperblock, type Superblock } from "./superblock.js";
import { VOLUME_RECORD_BYTES, decodeVolumeRecord } from "./volume-record.js";

/** A problem in the metadata file, in the block given when one is to blame. */
export interface MetadataProblem {
  blockIndex?: number;
  message: string;
}

/** A problem with the data file: no block of the metadata file is to blame. */
export interface DataFileProblem {
  file: "data";
  blockIndex: null;
  message: string;
}

export type CheckProblem = MetadataProblem | DataFileProblem;

/** The data file a check looked at; `byteLength` is null when there is no file to measure. */
export interface CheckedDataFile {
  path: string;
  byteLength: number | null;
  neededBytes: number;
}

/** What is at a data file's path: its length, or what stands in the way of one ("does not exist"). */
export type DataFileProbe = (dataPath: string) => Promise<{ byteLength: number } | { absent: string }>;

export interface CheckReport {
  clean: boolean;
  problems: CheckProblem[];
  /** Null when only the metadata file was checked (checkMetadataFile without a probe). */
  dataFile: CheckedDataFile | null;
  /** Not errors: states a crash can leave that the next commit repairs. */
  notes: string[];
  verified: {
    transactionId: number;
    metadataBlocks: number;
    volumes: number;
    mappings: number;
    dataBlocksReferenced: number;
    treeNodes: number;
  };
}

interface SubtreeSummary {
  entries: number;
  /** The largest key below, or -1 when empty. */
  maxKey: number;
}

export async function checkPool(metaPath: string): Promise<CheckReport> {
  // Shared, as any reader's: a process writing the pool holds it exclusively and is refused here.
  const metaFile = await openLockedMetadataFile(metaPath, "read-only", "shared");
  try {
    return await checkMetadataFile(metaFile, metaPath, probeDataFile);
  } finally {
    await metaFile.close();
  }
}

export async function checkMetadataFile(metaFile: StorageFile, metaPath: string, probe?: DataFileProbe): Promise<CheckReport> {
  const checker = new Checker(metaFile, metaPath, probe);
  return checker.run();
}

/** The data file on disk, as `Pool.open` will find it. */
export const probeDataFile: DataFileProbe = async (dataPath) => {
  try {
    const found = await stat(dataPath);
    return found.isFile() ? { byteLength: found.size } : { absent: "is not a regular file" };
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === "ENOENT") return { absent: "does not exist; without it no volume can be read: restore it from a backup" };
    return { absent: `cannot be examined: ${(error as Error).message}` };
  }
};

class Checker {
  private readonly problems: CheckProblem[] = [];
  private problemCount = 0;
  private readonly notes: string[] = [];
  private structureDamaged = false;
  private metadataRefs = new Uint32Array(0);
  private dataRefs = new Uint32Array(0);
  /** What each node's subtree holds, so a subtree shared by snapshots is walked once. */
  private readonly subtrees = new Map<number, SubtreeSummary>();
  /** One walker for every tree: it remembers each node, so a node shared between trees is walked once. */
  private walker!: TreeWalker;
  private readBlock!: VerifiedBlockReader;
  private superblock!: Superblock;
  private dataFile: CheckedDataFile | null = null;
  private readonly verified = { transactionId: 0, metadataBlocks: 0, volumes: 0, mappings: 0, dataBlocksReferenced: 0, treeNodes: 0 };

  constructor(
    private readonly metaFile: StorageFile,
    private readonly metaPath: string,
    private readonly probe?: DataFileProbe,
  ) {}

  async run(): Promise<CheckReport> {
    this.superblock = await this.readSuperblock();
    const metadataBlocks = this.superblock.metadataSpaceMap.blockCount;
    this.readBlock = verifiedBlockReader(this.metaFile, metadataBlocks);
    this.walker = new TreeWalker((blockIndex) => this.readBlock(blockIndex, BlockType.BTreeNode), true);
    const dataBlocks = this.superblock.dataSpaceMap.blockCount;
    this.verified.transactionId = this.superblock.transactionId;
    this.verified.metadataBlocks = metadataBlocks;
    this.metadataRefs = new Uint32Array(metadataBlocks);
    this.dataRefs = new Uint32Array(dataBlocks);
    for (const slot of SUPERBLOCK_SLOTS)
      countOne(this.metadataRefs, slot, "a superblock that decodes has its pointers above both slots, so the file holds them");
    if (this.probe) await this.checkDataFile(this.probe, dataBlocks);

    const metadataMap = await this.loadMap("metadata", this.superblock.metadataSpaceMap);
    const dataMap = await this.loadMap("data", this.superblock.dataSpaceMap);
    for (const map of [metadataMap, dataMap]) {
      for (const blockIndex of map?.layout.allBlocks() ?? []) this.countMetadataRef(blockIndex, "space map block");
    }

    const volumeNames = new Map<number, string>();
    await this.walkTree(this.superblock.volumeTableRoot, VOLUME_RECORD_BYTES, "volume table", async (volumeId, value, leafIndex) => {
      let record;
      try {
        record = decodeVolumeRecord(value, leafIndex);
      } catch (error) {
        this.problem(leafIndex, (error as Error).message);
        return;
      }
      this.verified.volumes++;
      volumeNames.set(volumeId, record.name);
      if (record.sizeBytes % SECTOR_BYTES !== 0)
        this.problem(leafIndex, `volume '${record.name}' size ${record.sizeBytes} is not whole sectors`);
      const virtualBlocks = Math.ceil(record.sizeBytes / DATA_BLOCK_BYTES);
      const walked = await this.walkTree(
        record.mappingRoot,
        MAPPING_VALUE_BYTES,
        `mapping tree of '${record.name}'`,
        (virtualBlock, mappingValue, mappingLeaf) => {
          const { dataBlock } = decodeMapping(mappingValue);
          if (dataBlock >= dataBlocks) {
            this.problem(
              mappingLeaf,
              `volume '${record.name}' maps block ${virtualBlock} to data block ${dataBlock}, beyond the pool's ${dataBlocks}`,
            );
            this.structureDamaged = true;
            return;
          }
          if (this.dataRefs[dataBlock] === 0) this.verified.dataBlocksReferenced++;
          countOne(this.dataRefs, dataBlock, "a data block beyond the pool is reported above");
        },
      );
      this.verified.mappings += walked.entries;
      if (walked.maxKey >= virtualBlocks) {
        this.problem(record.mappingRoot, `volume '${record.name}' maps block ${walked.maxKey}, beyond its size of ${virtualBlocks} blocks`);
      }
      if (walked.entries !== record.mappedBlocks) {
        this.problem(
          leafIndex,
          `volume '${record.name}' records ${record.mappedBlocks} mapped blocks but its tree holds ${walked.entries}`,
        );
      }
    });

    await this.walkTree(this.superblock.nameIndexRoot, NAME_INDEX_VALUE_BYTES, "name index", (key, value, leafIndex) => {
      const volumeId = readU64(value, 0);
      const name = volumeNames.get(volumeId);
      if (name === undefined) this.problem(leafIndex, `name index entry ${key} points at missing volume ${volumeId}`);
      else if (key < nameHash(name) || key >= nameHash(name) + NAME_PROBES_MAX)
        this.problem(leafIndex, `name index entry ${key} is not where '${name}' hashes`);
      volumeNames.delete(volumeId);
    });
    for (const [volumeId, name] of volumeNames) this.problem(undefined, `volume ${volumeId} ('${name}') is missing from the name index`);

    if (this.structureDamaged || !metadataMap || !dataMap) {
      this.notes.push("reference counts were not compared: some metadata could not be read");
    } else {
      this.compareCounts("metadata", metadataMap.table, this.metadataRefs);
      this.compareCounts("data", dataMap.table, this.dataRefs);
    }
    if (this.problemCount > this.problems.length) {
      this.problems.push({ message: `... and ${this.problemCount - this.problems.length} more problems` });
    }
    return { clean: this.problemCount === 0, problems: this.problems, dataFile: this.dataFile, notes: this.notes, verified: this.verified };
  }

  /** The data file is found as Pool.open finds it: by the superblock's path, relative to the metadata file. */
  private async checkDataFile(probe: DataFileProbe, dataBlocks: number): Promise<void> {
    const path = resolve(dirname(resolve(this.metaPath)), this.superblock.dataPath);
    const neededBytes = dataBlocks * DATA_BLOCK_BYTES;
    const found = await probe(path);
    if ("absent" in found) {
      this.dataFile = { path, byteLength: null, neededBytes };
      this.dataFileProblem(`data file ${path} ${found.absent}`);
      return;
    }
    this.dataFile = { path, byteLength: found.byteLength, neededBytes };
    if (found.byteLength < neededBytes) this.dataFileProblem(DataFileTruncatedError.describe(path, found.byteLength, neededBytes));
  }

  private dataFileProblem(message: string): void {
    this.problemCount++;
    this.problems.push({ file: "data", blockIndex: null, message });
  }

  private async readSuperblock(): Promise<Superblock> {
    const chosen = await chooseSuperblock(this.metaFile, this.metaPath, SUPERBLOCK_SLOTS, (block, slot) =>
      decodeSuperblock(block, slot, this.metaPath),
    );
    if ("unreadable" in chosen.otherSlot) {
      this.notes.push(
        `one superblock copy is unreadable (${chosen.otherSlot.unreadable}); an interrupted commit leaves this and the next commit rewrites it`,
      );
    }
    return chosen.superblock;
  }

  private async loadMap(which: string, root: Superblock["dataSpaceMap"]) {
    try {
      return await loadSpaceMap(root, this.readBlock);
    } catch (error) {
      if (!(error instanceof CorruptBlockError)) throw error;
      this.problem(error.blockIndex, `${which} space map: ${error.message}`);
      this.structureDamaged = true;
      return null;
    }
  }

  /** @internal */
  countMetadataRef(blockIndex: number, what: string): boolean {
    if (!(blockIndex >= SUPERBLOCK_SLOTS.length && blockIndex < this.metadataRefs.length)) {
      this.problem(blockIndex, `${what} points outside the metadata file`);
      this.structureDamaged = true;
      return false;
    }
    countOne(this.metadataRefs, blockIndex, "a pointer outside the file is reported above");
    return true;
  }

  /**
   * Walks a tree, counting one reference to its root and to each child of each node seen
   * for the first time. `visit` sees the entries of each leaf the first time it is reached;
   * a subtree shared with a tree walked earlier is not walked again (its entry count and
   * largest key are remembered), so a pool with many snapshots checks in the time its
   * distinct nodes take.
   */
  private async walkTree(root: number, valueBytes: number, what: string, visit: CheckedEntryVisit): Promise<SubtreeSummary> {
    if (!this.countMetadataRef(root, `root of the ${what}`)) return { entries: 0, maxKey: -1 };
    const tree = new CheckedTree(this, what, visit);
    await this.walker.walk(root, valueBytes, tree);
    if (tree.leafDepths.size > 1) this.problem(root, `leaves of the ${what} are at different depths`);
    return tree.total;
  }

  /** @internal For CheckedTree: one node's subtree, once walked. */
  remembered(blockIndex: number): SubtreeSummary | undefined {
    return this.subtrees.get(blockIndex);
  }

  /** @internal */
  remember(blockIndex: number, summary: SubtreeSummary): void {
    this.subtrees.set(blockIndex, summary);
  }

  /** @internal */
  nodeChecked(): void {
    this.verified.treeNodes++;
  }

  /** @internal A problem that leaves the references below it uncounted. */
  damagedProblem(blockIndex: number, message: string): void {
    this.problem(blockIndex, message);
    this.structureDamaged = true;
  }

  private compareCounts(which: string, stored: RefcountTable, found: Uint32Array): void {
    if (stored.blockCount !== found.length) {
      this.problem(undefined, `${which} space map covers ${stored.blockCount} blocks, ${found.length} expected`);
      return;
    }
    for (let block = 0; block < found.length; block++) {
      const storedCount = stored.get(block);
      const foundCount = at(found, block, "the loop stays inside found");
      if (storedCount === foundCount) continue;
      const subject = which === "metadata" ? `metadata block ${block}` : `data block ${block}`;
      if (foundCount === 0)
        this.problem(which === "metadata" ? block : undefined, `${subject} is leaked: count ${storedCount} but nothing references it`);
      else if (storedCount === 0)
        this.problem(which === "metadata" ? block : undefined, `${subject} is referenced ${foundCount} times but marked free`);
      else this.problem(which === "metadata" ? block : undefined, `${subject} has count ${storedCount} but ${foundCount} references`);
    }
  }

  /** @internal */
  problem(blockIndex: number | undefined, message: string): void {
    this.problemCount++;
    if (this.problems.length < PROBLEMS_LISTED_MAX) this.problems.push(blockIndex === undefined ? { message } : { blockIndex, message });
  }
}

type CheckedEntryVisit = (key: number, value: Buffer, leafIndex: number) => void | Promise<void>;

/**
 * Check's policy for one tree: every problem is listed and the walk goes on; keys must
 * increase and lie in the range the parent gives, leaves must all be at one depth, only the
 * root may be empty. Each node's entry count and largest key are summed bottom-up and
 * remembered, for the trees that share it.
 */
class CheckedTree implements NodeVisitor {
  readonly leafDepths = new Set<number>();
  readonly total: SubtreeSummary = { entries: 0, maxKey: -1 };
  /** The summary being built for the node at each depth of the current path. */
  private readonly path: SubtreeSummary[] = [];

  constructor(
    private readonly checker: Checker,
    private readonly what: string,
    private readonly visitEntry: CheckedEntryVisit,
  ) {}

  async visit(node: NodeView, low: number, high: number, depth: number): Promise<"skip" | void> {
    const { checker, what } = this;
    const blockIndex = node.blockIndex;
    const summary: SubtreeSummary = { entries: 0, maxKey: -1 };
    this.path[depth] = summary;
    checker.nodeChecked();
    const count = node.count;
    if (count === 0 && depth > 0) checker.problem(blockIndex, `${what}: empty node below the root`);
    let previous = -1;
    const keys: number[] = [];
    for (let i = 0; i < count; i++) {
      let key: number;
      try {
        key = node.keyAt(i);
      } catch (error) {
        checker.damagedProblem(blockIndex, `${what}: ${(error as Error).message}`);
        return "skip";
      }
      if (key <= previous) checker.problem(blockIndex, `${what}: keys out of order at entry ${i}`);
      if (key < low || key >= high) checker.problem(blockIndex, `${what}: key ${key} outside its parent's range [${low}, ${high})`);
      previous = key;
      keys.push(key);
    }
    if (!node.isLeaf) return;
    this.leafDepths.add(depth);
    // A leaf whose keys did not all decode was skipped above, so keys holds one per entry.
    for (let i = 0; i < count; i++) await this.visitEntry(at(keys, i, "one key per entry"), node.valueAt(i), blockIndex);
    summary.entries = count;
    summary.maxKey = keys.at(-1) ?? -1;
  }

  acceptChild(_parent: NodeView, _index: number, child: number): boolean {
    return this.checker.countMetadataRef(child, `${this.what} child pointer`);
  }

  leave(node: NodeView, depth: number): void {
    const summary = at(this.path, depth, "visit set the summary of the node being left");
    this.checker.remember(node.blockIndex, summary);
    this.addBelow(depth, summary);
  }

  visitAgain(blockIndex: number, _first: number, _end: number, depth: number): void {
    const summary = this.checker.remembered(blockIndex);
    if (summary) this.addBelow(depth, summary);
  }

  failed(error: CorruptBlockError, keys: KeyRange | null): void {
    // A bad entry (keys null) is named by its node, and its reason says which entry.
    this.checker.damagedProblem(error.blockIndex, `${this.what}: ${keys === null ? error.reason : error.message}`);
  }

  /** Adds a finished subtree at `depth` into its parent's summary, or the tree's. */
  private addBelow(depth: number, summary: SubtreeSummary): void {
    const into = depth === 0 ? this.total : at(this.path, depth - 1, "the parent of a node being walked was visited");
    into.entries += summary.entries;
    into.maxKey = Math.max(into.maxKey, summary.maxKey);
  }
}
