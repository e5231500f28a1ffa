// Which pool a data file belongs to (formats/data-file.md, "Pool identity"). The data file
// has no header (block n is at n x 65536, so dm-thin and Docker data files can be adopted in
// place), so the identity lives beside its bytes: an extended attribute, or a sidecar file
// where the file system has none.

import { readFile, rename, rm, stat, writeFile } from "node:fs/promises";
import { basename, dirname, join, relative, resolve } from "node:path";
import { IoError, WrongDataFileError } from "../errors.js";
import { assert } from "../io/assert.js";
import type { FileId, NodeStorageFile } from "../io/node-storage-file.js";
import { readXattr, writeXattr, type XattrRead } from "../io/xattr.js";

export const DATA_IDENTITY_XATTR = "user.thinp.pool";
export const DATA_IDENTITY_SIDECAR_SUFFIX = ".thinp-pool";
export const DATA_IDENTITY_FORMAT = 1;

export interface DataFileIdentity {
  poolUuid: string;
  /** The newest commit known to have been made through the data file's pool; never decreases. */
  commit: number;
  /** The pool's metadata file, relative to the data file's folder. */
  metadataPath: string;
}

export function encodeDataFileIdentity(identity: DataFileIdentity): Buffer {
  assert(Number.isSafeInteger(identity.commit) && identity.commit >= 0, `identity commit ${identity.commit}`);
  return Buffer.from(
    JSON.stringify({ format: DATA_IDENTITY_FORMAT, pool: identity.poolUuid, commit: identity.commit, metadata: identity.metadataPath }),
    "utf8",
  );
}

/** Decodes an identity record; null when it is not one this thinp can read. */
export function decodeDataFileIdentity(bytes: Buffer): DataFileIdentity | null {
  let value: unknown;
  try {
    value = JSON.parse(bytes.toString("utf8"));
  } catch {
    return null;
  }
  if (typeof value !== "object" || value === null) return null;
  const { format, pool, commit, metadata } = value as Record<string, unknown>;
  if (format !== DATA_IDENTITY_FORMAT || typeof pool !== "string" || !/^[0-9a-f-]{36}$/.test(pool)) return null;
  if (typeof commit !== "number" || !Number.isSafeInteger(commit) || commit < 0) return null;
  if (typeof metadata !== "string" || metadata.length === 0) return null;
  return { poolUuid: pool, commit, metadataPath: metadata };
}

type Home = "xattr" | "sidecar" | "none";

/** The extended-attribute calls, replaceable so tests can play a file system that has none. */
export interface AttributeCalls {
  read(fd: number, name: string, path: string): XattrRead;
  write(fd: number, name: string, value: Buffer, path: string): boolean;
}

const SYSTEM_ATTRIBUTES: AttributeCalls = { read: readXattr, write: writeXattr };

/** Reads and writes one data file's identity, wherever it lives. */
export class DataFileIdentityStore {
  private home: Home | null = null;

  constructor(
    private readonly file: NodeStorageFile,
    readonly dataPath: string,
    private readonly attributes: AttributeCalls = SYSTEM_ATTRIBUTES,
  ) {}

  get sidecarPath(): string {
    return `${this.dataPath}${DATA_IDENTITY_SIDECAR_SUFFIX}`;
  }

  /** Where the identity is kept, for messages: how to inspect or remove it. */
  describeHome(): string {
    return this.home === "sidecar" ? `the file ${this.sidecarPath}` : `the extended attribute ${DATA_IDENTITY_XATTR} of ${this.dataPath}`;
  }

  /** The stored identity; null when there is none yet. `metaPath` names the pool in errors. */
  async read(metaPath: string): Promise<DataFileIdentity | null> {
    const bytes = await this.readBytes();
    if (bytes === null) return null;
    const identity = decodeDataFileIdentity(bytes);
    if (identity === null) {
      throw new WrongDataFileError(
        metaPath,
        this.dataPath,
        `the data file's pool identity (${this.describeHome()}) is not one this thinp can read; ` +
          `if this is the pool's data file, remove it (${this.removeCommand()}) and open the pool again`,
      );
    }
    return identity;
  }

  async write(identity: DataFileIdentity): Promise<void> {
    if (this.home === null) await this.readBytes();
    const bytes = encodeDataFileIdentity(identity);
    if (this.home === "xattr") {
      if (this.attributes.write(this.file.descriptor, DATA_IDENTITY_XATTR, bytes, this.dataPath)) return;
      this.home = "sidecar";
    }
    if (this.home === "sidecar") await this.writeSidecar(bytes);
  }

  private async readBytes(): Promise<Buffer | null> {
    const fileId = await this.file.fileId();
    // A block device's node lives on /dev, which forgets everything at boot; such a data
    // file carries no identity, and only the lock keeps two pools off it at once.
    if (fileId.isBlockDevice) {
      this.home = "none";
      return null;
    }
    const attribute = this.attributes.read(this.file.descriptor, DATA_IDENTITY_XATTR, this.dataPath);
    if (attribute.kind === "value") {
      this.home = "xattr";
      return attribute.value;
    }
    const sidecar = await readFile(this.sidecarPath).catch((error: NodeJS.ErrnoException) => {
      if (error.code === "ENOENT") return null;
      throw new IoError(this.sidecarPath, error);
    });
    this.home = sidecar !== null || attribute.kind === "unsupported" ? "sidecar" : "xattr";
    return sidecar;
  }

  /** A new sidecar is made whole under another name and renamed over the old one. */
  private async writeSidecar(bytes: Buffer): Promise<void> {
    const temporary = join(dirname(this.sidecarPath), `.${basename(this.sidecarPath)}.${process.pid}`);
    try {
      await writeFile(temporary, bytes, { mode: 0o644 });
      await rename(temporary, this.sidecarPath);
    } catch (error) {
      await rm(temporary, { force: true });
      throw new IoError(this.sidecarPath, error);
    }
  }

  private removeCommand(): string {
    return this.home === "sidecar" ? `rm ${this.sidecarPath}` : `setfattr -x ${DATA_IDENTITY_XATTR} ${this.dataPath}`;
  }
}

export interface MetadataClaim {
  poolUuid: string;
  transactionId: number;
  /** Written by `thinp repair --output`: refused until it is the file the data file names. */
  repairedCopy: boolean;
}

export interface ClaimResult {
  /** A repaired copy that has been put in place: its flag can be cleared. */
  repairedCopyInPlace: boolean;
  /** The identity as it now stands, for later commits to advance. */
  identity: DataFileIdentity | null;
}

/**
 * Decides whether the metadata file at `metaPath` (open, identified by `metaFileId`) may
 * use this data file, and, when `writable`, records it as the pool's metadata file. Both
 * files are locked by the caller, so nothing changes the identity meanwhile.
 */
export async function claimDataFile(
  store: DataFileIdentityStore,
  metaPath: string,
  metaFileId: FileId,
  claim: MetadataClaim,
  writable: boolean,
): Promise<ClaimResult> {
  const dataPath = store.dataPath;
  const ownPath = relative(dirname(dataPath), metaPath);
  const stored = await store.read(metaPath);
  if (stored === null) {
    const identity = { poolUuid: claim.poolUuid, commit: claim.transactionId, metadataPath: ownPath };
    // A pool made before data files carried an identity gains one on its first open for writing.
    if (writable) await store.write(identity);
    return { repairedCopyInPlace: claim.repairedCopy, identity: writable ? identity : null };
  }
  const ownerPath = resolve(dirname(dataPath), stored.metadataPath);
  if (stored.poolUuid !== claim.poolUuid) {
    throw new WrongDataFileError(
      metaPath,
      dataPath,
      `the data file belongs to pool ${stored.poolUuid}, whose metadata file is ${ownerPath}, and this is pool ${claim.poolUuid}; ` +
        `check which data file this metadata file should name`,
    );
  }
  const ownerIsThis = await namesFile(ownerPath, metaFileId);
  if (claim.repairedCopy && !ownerIsThis) {
    throw new WrongDataFileError(
      metaPath,
      dataPath,
      `it is the output of 'thinp repair' and not yet in place; the pool's metadata file is ${ownerPath}. ` +
        `Put it in place first: mv ${ownerPath} ${ownerPath}.old && mv ${metaPath} ${ownerPath}`,
    );
  }
  if (claim.transactionId < stored.commit) {
    throw new WrongDataFileError(
      metaPath,
      dataPath,
      `it holds commit ${claim.transactionId} of pool ${claim.poolUuid}, but the data file was last written by commit ${stored.commit} ` +
        `through ${ownerPath}: this is an older copy (a backup, or a file 'thinp repair' replaced), and writing through it would hand out ` +
        `blocks that newer volumes hold. Use ${ownerPath}${ownerIsThis ? " as it was before it was overwritten" : ""}; ` +
        `if that is lost, 'thinp repair' makes a consistent pool from this one`,
    );
  }
  if (!writable) return { repairedCopyInPlace: false, identity: stored };
  const identity = { poolUuid: claim.poolUuid, commit: claim.transactionId, metadataPath: ownerIsThis ? stored.metadataPath : ownPath };
  if (identity.commit !== stored.commit || identity.metadataPath !== stored.metadataPath) await store.write(identity);
  return { repairedCopyInPlace: claim.repairedCopy, identity };
}

async function namesFile(path: string, fileId: FileId): Promise<boolean> {
  try {
    const stats = await stat(path);
    return stats.dev === fileId.dev && stats.ino === fileId.ino;
  } catch {
    return false;
  }
}
