// Holds: hidden, read-only snapshots that keep a volume's tree as it was while a reader
// goes through it on a pool others write to (formats/metadata.md, "Volume identity"). A
// hold is what dm-thin calls a metadata snapshot, for one volume: its blocks cannot be
// reused while it exists, and writes to the volume copy rather than overwrite them.

import { randomBytes } from "node:crypto";
import { assert } from "../io/assert.js";
import type { VolumeIdentity } from "./api.js";

/** Every hold's name starts so; user names start with a letter or digit, so the two never meet. */
export const HOLD_NAME_PREFIX = ".hold-";

/** A volume held: the hidden snapshot to read, and what the volume was when it was taken. */
export interface VolumeHold {
  /** The held volume's own name and id. */
  name: string;
  volumeId: number;
  /** The hidden snapshot that keeps its contents. */
  holdName: string;
  /** The volume's identity when held; it names the hold's contents exactly when `sealed`. */
  identity: VolumeIdentity;
  sealed: boolean;
  sizeBytes: number;
  mappedBlocks: number;
  /** The volume's snapshot time once held (the hold is its latest snapshot). */
  snapshotTime: number;
}

/** `.hold-<count>-<8 hex digits>`: the count keeps one process's holds apart, the random part two processes'. */
export function holdName(count: number): string {
  assert(Number.isSafeInteger(count) && count >= 0, `hold count ${count}`);
  return `${HOLD_NAME_PREFIX}${count}-${randomBytes(4).toString("hex")}`;
}

export function isHoldName(name: string): boolean {
  return name.startsWith(HOLD_NAME_PREFIX);
}
