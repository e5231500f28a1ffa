// Refusals that say what to do next: where the pool is looked for and how to name or
// make one, which file comes first, which folder is missing, how a read-only server
// was started, and limits in units a person reads.

import { existsSync } from "node:fs";
import path from "node:path";
import { afterEach, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { assertCliBuilt, makeTempDir, removeTempDir, runCli, runCliOk } from "./support/cli-run.js";
import { killAllServers, startServe } from "./support/cli-serve-process.js";

let dir: string;
const cwd = () => ({ cwd: dir });

beforeAll(() => assertCliBuilt());
beforeEach(async () => {
  dir = await makeTempDir();
});
afterEach(async () => {
  killAllServers();
  await removeTempDir(dir);
});

async function createPool(): Promise<void> {
  await runCliOk(["create-pool", "data.img", "meta.img", "--size", "1M"], cwd());
}

describe("messages that say the next step", () => {
  it("a missing ./meta.img says how to name a pool (--pool, THINP_POOL) and how to make one, exit 8", async () => {
    for (const args of [["list"], ["status"], ["create", "v", "--size", "1M"]]) {
      const result = await runCli(args, cwd());
      expect(result.exitCode, args.join(" ")).toBe(8);
      expect(result.stdout).toBe("");
      expect(result.stderr).toMatch(/^thinp: metadata file .*meta\.img does not exist; [^\n]+\n$/);
      expect(result.stderr).toContain("--pool");
      expect(result.stderr).toContain("THINP_POOL");
      expect(result.stderr).toContain("thinp create-pool");
    }
  });

  it("create-pool with the metadata file named first says the data file comes first, exit 2, creating nothing", async () => {
    const result = await runCli(["create-pool", "meta.img", "data.img", "--size", "1M"], cwd());
    expect(result.exitCode).toBe(2);
    expect(result.stderr).toMatch(/^thinp: [^\n]+\n$/);
    expect(result.stderr).toContain("the data file comes first: thinp create-pool data.img meta.img");
    expect(existsSync(path.join(dir, "meta.img"))).toBe(false);
    expect(existsSync(path.join(dir, "data.img"))).toBe(false);
    // Names that do not clearly say which is which are taken as given.
    await runCliOk(["create-pool", "pool.data", "pool.metadata", "--size", "1M"], cwd());
    await runCliOk(["create-pool", "a.img", "b.img", "--size", "1M"], cwd());
  });

  it("create-pool into a folder that does not exist names the folder, exit 8, creating nothing", async () => {
    const both = await runCli(["create-pool", "nodir/data.img", "nodir/meta.img", "--size", "1M"], cwd());
    expect(both.exitCode).toBe(8);
    expect(both.stderr).toBe("thinp: folder nodir does not exist; create it first (mkdir -p nodir)\n");
    const metaOnly = await runCli(["create-pool", "data.img", "other/meta.img", "--size", "1M"], cwd());
    expect(metaOnly.exitCode).toBe(8);
    expect(metaOnly.stderr).toBe("thinp: folder other does not exist; create it first (mkdir -p other)\n");
    expect(existsSync(path.join(dir, "data.img"))).toBe(false);
  });

  it("serve --socket in a folder that does not exist names the folder, exit 8", async () => {
    await createPool();
    const result = await runCli(["serve", "--socket", "nodir/nbd.sock"], cwd());
    expect(result.exitCode).toBe(8);
    expect(result.stdout).toBe("");
    // serve resolves --socket, and logs and prints it that way.
    const folder = path.join(dir, "nodir");
    expect(result.stderr).toBe(`thinp: folder ${folder} does not exist; create it first (mkdir -p ${folder})\n`);
  });

  it("help for an unknown command says it is unknown and lists the commands, exit 2", async () => {
    const result = await runCli(["help", "nosuch"], cwd());
    expect(result.exitCode).toBe(2);
    expect(result.stdout).toBe("");
    expect(result.stderr).toMatch(/^thinp: unknown command 'nosuch'/);
    expect(result.stderr).toContain("create-pool");
    expect(result.stderr).toContain("thinp help");
    // Help for a known command still works.
    const known = await runCli(["help", "create"], cwd());
    expect(known.exitCode).toBe(0);
    expect(known.stdout).toMatch(/^Usage: thinp create /);
    expect((await runCli(["help", "help"], cwd())).exitCode).toBe(0);
    const all = await runCli(["help"], cwd());
    expect(all.exitCode).toBe(0);
    expect(all.stdout).toMatch(/^Usage: thinp /);
  });

  it("a read-only server's refusal says it was started with --read-only and how to make changes", async () => {
    await createPool();
    await runCliOk(["create", "v", "--size", "1M"], cwd());
    const server = await startServe(["--read-only", "--listen", "127.0.0.1:0"], cwd());
    for (const args of [
      ["create", "x", "--size", "1M"],
      ["snapshot", "v", "s"],
      ["delete", "v"],
      ["resize", "v", "--size", "2M"],
      ["resize-pool", "--size", "2M"],
    ]) {
      const result = await runCli(args, cwd());
      expect(result.exitCode, args.join(" ")).toBe(1);
      expect(result.stderr).toBe(
        `thinp: pool ${path.join(dir, "meta.img")} is served read-only: thinp serve (process ${server.pid}) was started with --read-only; ` +
          "stop it and run it again without --read-only to make changes\n",
      );
    }
    expect(await server.stop()).toBe(0);
  });

  it("size limits are printed in units and in bytes", async () => {
    const tooBig = await runCli(["create-pool", "data.img", "meta.img", "--size", "300T"], cwd());
    expect(tooBig).toMatchObject({ exitCode: 2, stdout: "" });
    expect(tooBig.stderr).toBe("thinp: pool size 300 TiB (329853488332800 bytes) exceeds the limit of 256 TiB (281474976710656 bytes)\n");
    const tooSmall = await runCli(["create-pool", "data.img", "meta.img", "--size", "1000"], cwd());
    expect(tooSmall.stderr).toBe("thinp: pool size 1000 bytes is too small: at least one 64 KiB (65536-byte) block is needed\n");
    const unaligned = await runCli(["create-pool", "data.img", "meta.img", "--size", "100K"], cwd());
    expect(unaligned.stderr).toBe("thinp: pool size 100 KiB (102400 bytes) is not a multiple of the 64 KiB (65536-byte) block size\n");

    await createPool();
    const volume = await runCli(["create", "v", "--size", "5P"], cwd());
    expect(volume.exitCode).toBe(2);
    expect(volume.stderr).toBe("thinp: volume size 5 PiB (5629499534213120 bytes) exceeds the limit of 4 PiB (4503599627370496 bytes)\n");
    const unparsable = await runCli(["create", "v", "--size", "100P"], cwd());
    expect(unparsable.exitCode).toBe(2);
    expect(unparsable.stderr).toBe("thinp: size '100P' is too large: the limit is 8 PiB (9007199254740991 bytes)\n");
    const shrink = await runCli(["resize-pool", "--size", "512K"], cwd());
    expect(shrink.exitCode).toBe(2);
    expect(shrink.stderr).toBe("thinp: a pool cannot shrink: it has 1 MiB (1048576 bytes); choose a size of at least that\n");
  });
});
