// A mapping tree whose pointers loop back on themselves (a misdirected write, a bug in
// another tool) is corruption: every command that walks it fails typed, naming the block,
// and `thinp repair` gets the pool back. Found with delete, which freed the root and then
// met it again through its own child, failing an assertion (exit 70).

import { open, writeFile } from "node:fs/promises";
import path from "node:path";
import { afterEach, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { BlockType } from "../src/pdata/block-format.js";
import { NodeView } from "../src/pdata/btree/node.js";
import { MAPPING_VALUE_BYTES } from "../src/thin/mapping-value.js";
import { assertCliBuilt, makeTempDir, removeTempDir, runCli, runCliOk } from "./support/cli-run.js";
import { mappingRootOf, rewriteMetadataBlock } from "./support/pool-blocks.js";

const BLOCK_BYTES = 65536;
/** Enough mappings that the tree has an internal root over several leaves. */
const MAPPED_BLOCKS = 2000;
let dir: string;

beforeAll(() => assertCliBuilt());
beforeEach(async () => {
  dir = await makeTempDir();
});
afterEach(async () => removeTempDir(dir));

/** A sparse file with one non-zero byte in each of its first `blocks` blocks. */
async function oneBytePerBlock(filePath: string, blocks: number): Promise<void> {
  await writeFile(filePath, "");
  const handle = await open(filePath, "r+");
  try {
    for (let block = 0; block < blocks; block++) await handle.write(Buffer.of((block % 251) + 1), 0, 1, block * BLOCK_BYTES);
  } finally {
    await handle.close();
  }
}

describe("a mapping tree that loops", () => {
  it("fails delete with a corruption error naming the block, and repair recovers the pool", async () => {
    const cwd = { cwd: dir };
    await runCliOk(["create-pool", "data.img", "meta.img", "--size", "256M"], cwd);
    await runCliOk(["create", "vol", "--size", "200M"], cwd);
    await runCliOk(["create", "keep", "--size", "1M"], cwd);
    await oneBytePerBlock(path.join(dir, "vol.raw"), MAPPED_BLOCKS);
    await runCliOk(["import", "vol", "vol.raw"], cwd);

    const metaPath = path.join(dir, "meta.img");
    const root = await mappingRootOf(metaPath, "vol");
    await rewriteMetadataBlock(metaPath, root, BlockType.BTreeNode, (block) => {
      const node = NodeView.open(block, root, MAPPING_VALUE_BYTES);
      expect(node.isLeaf).toBe(false);
      node.setChild(node.count - 1, root);
    });

    const deleted = await runCli(["delete", "vol"], cwd);
    expect(deleted.exitCode, deleted.stderr).toBe(6);
    expect(deleted.stderr).toMatch(new RegExp(`^thinp: metadata block ${root} .*is corrupt`));
    // Nothing was committed: both volumes are still listed.
    expect(
      JSON.parse(await runCliOk(["list", "--json"], cwd))
        .volumes.map((v: { name: string }) => v.name)
        .sort(),
    ).toEqual(["keep", "vol"]);

    expect((await runCli(["check"], cwd)).exitCode).toBe(6);
    await runCliOk(["repair", "--in-place"], cwd);
    expect((await runCli(["check"], cwd)).exitCode).toBe(0);
    await runCliOk(["delete", "vol"], cwd);
    expect(JSON.parse(await runCliOk(["list", "--json"], cwd)).volumes.map((v: { name: string }) => v.name)).toEqual(["keep"]);
  });
});
