// import and export as a user meets them: interrupted exports that leave nothing behind,
// `-` for stdin and stdout, block devices both ways, directories and disk-image containers
// refused as such, and a pool that still answers list and status while an import runs.

import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdir, open, readdir, readFile, stat, writeFile } from "node:fs/promises";
import path from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { killAllBackground, startCli, waitFor, type BackgroundCli } from "./support/cli-background.js";
import { assertCliBuilt, CLI_PATH, makeTempDir, removeTempDir, runCli, runCliOk, runProgram, seededBytes } from "./support/cli-run.js";
import { LoopDevices } from "./support/loop-device.js";

const KiB = 1024;
const MiB = 1024 * KiB;
const BLOCK_BYTES = 64 * KiB;
const PARTIAL_NAME = /\.thinp-partial-\d+$/;

beforeAll(() => assertCliBuilt());
afterEach(async () => {
  await killAllBackground();
});

/** A pool in a fresh folder: 1 GiB of data file (sparse until written) unless told. */
async function makePool(sizeOption = "1G"): Promise<string> {
  const dir = await makeTempDir();
  await runCliOk(["create-pool", "data.img", "meta.img", "--size", sizeOption], { cwd: dir });
  return dir;
}

/** Writes `byteLength` bytes of seeded, never-zero-block data a few MiB at a time. */
async function writeDataFile(filePath: string, byteLength: number, seed: number): Promise<void> {
  const handle = await open(filePath, "w");
  try {
    for (let offset = 0; offset < byteLength; offset += 4 * MiB) {
      await handle.write(seededBytes(Math.min(4 * MiB, byteLength - offset), seed + offset / MiB), 0, undefined, offset);
    }
  } finally {
    await handle.close();
  }
}

async function partialFiles(folder: string): Promise<string[]> {
  return (await readdir(folder)).filter((name) => PARTIAL_NAME.test(name));
}

async function listVolumes(dir: string): Promise<{ name: string; mappedBlocks: number; sizeBytes: number }[]> {
  return JSON.parse(await runCliOk(["list", "--json"], { cwd: dir })).volumes;
}

describe("an interrupted export leaves nothing behind", () => {
  let dir: string;
  const cwd = () => ({ cwd: dir });

  beforeAll(async () => {
    // 256 MiB of data takes the export about a second: long enough to interrupt.
    dir = await makePool("512M");
    await runCliOk(["create", "big", "--size", "256M"], cwd());
    await writeDataFile(path.join(dir, "big.bin"), 256 * MiB, 0xb16);
    await runCliOk(["import", "big", "big.bin"], cwd());
    await writeFile(path.join(dir, "big.bin"), "");
    await mkdir(path.join(dir, "sub"));
  });
  afterAll(async () => {
    await removeTempDir(dir);
  });

  /** Starts `export big TARGET`, waits until its partial file appears in `folder`, and returns both. */
  async function exportUntilWriting(args: readonly string[], folder: string): Promise<{ cli: BackgroundCli; partial: string }> {
    const cli = startCli(["export", "big", ...args], cwd());
    const partial = await waitFor("the export's partial file", async () => (await partialFiles(path.join(dir, folder)))[0] ?? null, cli);
    return { cli, partial };
  }

  it("SIGTERM removes the partial file, says so, and exits 143 with no target", async () => {
    const { cli, partial } = await exportUntilWriting(["out.raw"], ".");
    expect(partial).toBe(`.out.raw.thinp-partial-${cli.pid}`);
    cli.kill("SIGTERM");
    const exit = await cli.exited;
    expect(exit.stderr).toBe(`thinp: export interrupted by SIGTERM; removed the partial file ${partial}\n`);
    expect(exit.exitCode).toBe(143);
    expect(existsSync(path.join(dir, "out.raw"))).toBe(false);
    expect(await partialFiles(dir)).toEqual([]);
  });

  it("SIGINT does the same in another folder, naming the partial file there, and exits 130", async () => {
    const { cli, partial } = await exportUntilWriting(["sub/out.raw"], "sub");
    cli.kill("SIGINT");
    const exit = await cli.exited;
    expect(exit.stderr).toBe(`thinp: export interrupted by SIGINT; removed the partial file sub/${partial}\n`);
    expect(exit.exitCode).toBe(130);
    expect(await readdir(path.join(dir, "sub"))).toEqual([]);
  });

  it("an interrupted export with --force leaves the file it would have replaced untouched", async () => {
    await writeFile(path.join(dir, "keep.raw"), "the previous image\n");
    const { cli } = await exportUntilWriting(["keep.raw", "--force"], ".");
    // While the copy runs, the old file is still whole.
    expect(await readFile(path.join(dir, "keep.raw"), "utf8")).toBe("the previous image\n");
    cli.kill("SIGTERM");
    const exit = await cli.exited;
    expect(exit.exitCode).toBe(143);
    expect(await readFile(path.join(dir, "keep.raw"), "utf8")).toBe("the previous image\n");
    expect(await partialFiles(dir)).toEqual([]);
  });

  it("a finished export with --force replaces the file in one step and leaves no partial file", async () => {
    await writeFile(path.join(dir, "done.raw"), "the previous image\n");
    const out = await runCliOk(["export", "big", "done.raw", "--force"], cwd());
    expect(out).toBe("exported big (256 MiB) to done.raw: 256 MiB of data, the rest left as holes\n");
    expect((await stat(path.join(dir, "done.raw"))).size).toBe(256 * MiB);
    const head = Buffer.alloc(4 * MiB);
    const handle = await open(path.join(dir, "done.raw"), "r");
    await handle.read(head, 0, head.length, 0);
    await handle.close();
    expect(head.equals(seededBytes(4 * MiB, 0xb16))).toBe(true);
    expect(await partialFiles(dir)).toEqual([]);
  });
});

describe("- is stdin for import and stdout for export", () => {
  let dir: string;
  const cwd = () => ({ cwd: dir });
  const data = seededBytes(MiB, 0x57d);

  beforeAll(async () => {
    dir = await makePool();
    await runCliOk(["create", "vol", "--size", "8M"], cwd());
    await writeFile(path.join(dir, "data.bin"), data);
    await runCliOk(["import", "vol", "data.bin", "--offset", "2M"], cwd());
  });
  afterAll(async () => {
    await removeTempDir(dir);
  });

  it("export to - writes the whole volume to stdout, holes as zeros, and the summary to stderr", async () => {
    const cli = startCli(["export", "vol", "-"], cwd());
    const exit = await cli.exited;
    expect(exit.exitCode, exit.stderr).toBe(0);
    const expected = Buffer.alloc(8 * MiB);
    data.copy(expected, 2 * MiB);
    expect(exit.stdout.length).toBe(8 * MiB);
    expect(exit.stdout.equals(expected)).toBe(true);
    expect(exit.stderr).toBe("exported vol (8 MiB) to stdout: 1 MiB of data, the rest written as zeros\n");
    expect(existsSync(path.join(dir, "-"))).toBe(false);
  });

  it("import from - streams stdin into the volume, discarding zero blocks", async () => {
    await runCliOk(["create", "piped", "--size", "4M"], cwd());
    // 1 MiB of data, a zero block, and a tail that ends mid-block.
    const image = Buffer.concat([data, Buffer.alloc(BLOCK_BYTES), data.subarray(0, 1000)]);
    const cli = startCli(["import", "piped", "-"], { ...cwd(), stdin: "pipe" });
    for (let offset = 0; offset < image.length; offset += 100 * KiB) cli.stdin.write(image.subarray(offset, offset + 100 * KiB));
    cli.stdin.end();
    const exit = await cli.exited;
    expect(exit.exitCode, exit.stderr).toBe(0);
    expect(exit.stdout.toString()).toMatch(
      /^imported 1\.1 MiB from stdin into piped at offset 0 \(1 MiB written, 64 KiB of zero blocks discarded\)\n$/,
    );
    const exported = await startCli(["export", "piped", "-"], cwd()).exited;
    const expected = Buffer.alloc(4 * MiB);
    image.copy(expected);
    expect(exported.stdout.equals(expected)).toBe(true);
    const piped = (await listVolumes(dir)).find((volume) => volume.name === "piped")!;
    expect(piped.mappedBlocks).toBe(MiB / BLOCK_BYTES + 1);
  });

  it("import from - refuses as soon as stdin runs past the end of the volume, committing nothing", async () => {
    await runCliOk(["create", "tiny", "--size", "1M"], cwd());
    const cli = startCli(["import", "tiny", "-"], { ...cwd(), stdin: "pipe" });
    // One byte more than fits, and stdin left open: the refusal must not wait for its end.
    cli.stdin.write(Buffer.concat([data, Buffer.from([1])]));
    const exit = await cli.exited;
    cli.stdin.destroy();
    expect(exit.exitCode).toBe(2);
    expect(exit.stderr).toBe(
      "thinp: stdin (more than 1048576 bytes) does not fit in 'tiny' at offset 0: it needs more than 1048576 bytes " +
        "and the volume has 1048576 (1 MiB); grow it with 'thinp resize tiny --size SIZE'\n",
    );
    const tiny = (await listVolumes(dir)).find((volume) => volume.name === "tiny")!;
    expect(tiny.mappedBlocks).toBe(0);
  });

  it("import from - at an offset past the end of the volume is refused before reading", async () => {
    const result = await runCli(["import", "vol", "-", "--offset", "9M"], cwd());
    expect(result).toMatchObject({ exitCode: 2, stderr: "thinp: offset 9437184 is past the end of 'vol' (8388608 bytes, 8 MiB)\n" });
  });

  it("a named pipe works as the import source and as the export target", async () => {
    await runCliOk(["create", "fifo", "--size", "2M"], cwd());
    const fifo = path.join(dir, "pipe");
    expect(spawnSync("mkfifo", [fifo]).status).toBe(0);
    const importing = startCli(["import", "fifo", "pipe"], cwd());
    const writer = await open(fifo, "w");
    await writer.write(data);
    await writer.close();
    const imported = await importing.exited;
    expect(imported.exitCode, imported.stderr).toBe(0);
    expect(imported.stdout.toString()).toBe(
      "imported 1 MiB from pipe into fifo at offset 0 (1 MiB written, 0 B of zero blocks discarded)\n",
    );
    const exporting = startCli(["export", "fifo", "pipe"], cwd());
    const exported = await readFile(fifo);
    const exit = await exporting.exited;
    expect(exit.exitCode, exit.stderr).toBe(0);
    expect(exit.stdout.toString()).toBe("exported fifo (2 MiB) to pipe: 1 MiB of data, the rest written as zeros\n");
    expect(exported.equals(Buffer.concat([data, Buffer.alloc(MiB)]))).toBe(true);
  });

  it("import from - of exactly the volume's size fits", async () => {
    await runCliOk(["create", "exact", "--size", "1M"], cwd());
    const cli = startCli(["import", "exact", "-"], { ...cwd(), stdin: "pipe" });
    cli.stdin.end(data);
    const exit = await cli.exited;
    expect(exit.exitCode, exit.stderr).toBe(0);
    expect((await listVolumes(dir)).find((volume) => volume.name === "exact")!.mappedBlocks).toBe(16);
  });
});

describe("block devices as import source and export target", () => {
  let dir: string;
  const cwd = () => ({ cwd: dir });
  const loops = new LoopDevices();
  let big: string | null = null;
  let small: string | null = null;
  let unavailable = "";
  const data = seededBytes(3 * MiB, 0xdef);

  beforeAll(async () => {
    dir = await makePool();
    // Devices full of non-zero bytes, so an export that skipped the volume's holes would show.
    await writeDataFile(path.join(dir, "big-device.img"), 16 * MiB, 0xbad);
    await writeDataFile(path.join(dir, "small-device.img"), 4 * MiB, 0xbad);
    const bigAttach = loops.attach(path.join(dir, "big-device.img"));
    const smallAttach = loops.attach(path.join(dir, "small-device.img"));
    if ("device" in bigAttach) big = bigAttach.device;
    else unavailable = bigAttach.unavailable;
    if ("device" in smallAttach) small = smallAttach.device;
    await runCliOk(["create", "vol", "--size", "16M"], cwd());
    await writeFile(path.join(dir, "data.bin"), data);
    await runCliOk(["import", "vol", "data.bin", "--offset", "5M"], cwd());
  });
  afterAll(async () => {
    loops.detachAll();
    await removeTempDir(dir);
  });

  it("import reads a whole block device, its size taken from the device", async (context) => {
    if (big === null) context.skip(`no loop device: ${unavailable}`);
    await runCliOk(["create", "fromdev", "--size", "16M"], cwd());
    const out = await runCliOk(["import", "fromdev", big!], cwd());
    expect(out).toBe(`imported 16 MiB from ${big} into fromdev at offset 0 (16 MiB written, 0 B of zero blocks discarded)\n`);
    const exported = await startCli(["export", "fromdev", "-"], cwd()).exited;
    expect(exported.stdout.equals(await readFile(path.join(dir, "big-device.img")))).toBe(true);
  });

  it("export onto a block device needs --force, naming it", async (context) => {
    if (big === null) context.skip(`no loop device: ${unavailable}`);
    const before = await readFile(big!);
    const result = await runCli(["export", "vol", big!], cwd());
    expect(result).toMatchObject({
      exitCode: 4,
      stderr: `thinp: ${big} is a block device; add --force to overwrite it with 'vol'\n`,
    });
    expect((await readFile(big!)).equals(before)).toBe(true);
  });

  it("export --force writes the volume onto a block device in place, holes as zeros", async (context) => {
    if (big === null) context.skip(`no loop device: ${unavailable}`);
    const out = await runCliOk(["export", "vol", big!, "--force"], cwd());
    expect(out).toBe(`exported vol (16 MiB) to ${big}: 3 MiB of data, the rest written as zeros\n`);
    const expected = Buffer.alloc(16 * MiB);
    data.copy(expected, 5 * MiB);
    expect((await readFile(big!)).equals(expected)).toBe(true);
    expect(await partialFiles(path.dirname(big!))).toEqual([]);
  });

  it("export onto a block device smaller than the volume is refused naming both sizes", async (context) => {
    if (small === null) context.skip(`no second loop device: ${unavailable}`);
    const before = await readFile(small!);
    const result = await runCli(["export", "vol", small!, "--force"], cwd());
    expect(result).toMatchObject({
      exitCode: 2,
      stderr:
        `thinp: ${small} holds 4194304 bytes (4 MiB) and 'vol' is 16777216 bytes (16 MiB); ` +
        `the device must be at least as large as the volume\n`,
    });
    expect((await readFile(small!)).equals(before)).toBe(true);
  });
});

describe("what import and export refuse", () => {
  let dir: string;
  const cwd = () => ({ cwd: dir });

  beforeAll(async () => {
    dir = await makePool();
    await runCliOk(["create", "vol", "--size", "8M"], cwd());
    await writeFile(path.join(dir, "data.bin"), seededBytes(MiB, 0xf11e));
    await runCliOk(["import", "vol", "data.bin"], cwd());
    await mkdir(path.join(dir, "adir"));
  });
  afterAll(async () => {
    await removeTempDir(dir);
  });

  it("a directory as the export target is refused as such", async () => {
    const result = await runCli(["export", "vol", "adir"], cwd());
    expect(result).toMatchObject({ exitCode: 1, stdout: "", stderr: "thinp: adir is a directory; name a file to write\n" });
    expect(await readdir(path.join(dir, "adir"))).toEqual([]);
  });

  it("a directory as the import source is refused as such", async () => {
    const result = await runCli(["import", "vol", "adir"], cwd());
    expect(result).toMatchObject({ exitCode: 1, stdout: "", stderr: "thinp: adir is a directory; name a file to read\n" });
  });

  it("export onto an existing file says to add --force, and leaves the file alone", async () => {
    await writeFile(path.join(dir, "out.raw"), "keep me");
    const result = await runCli(["export", "vol", "out.raw"], cwd());
    expect(result).toMatchObject({ exitCode: 4, stderr: "thinp: out.raw already exists; add --force to replace it\n" });
    expect(await readFile(path.join(dir, "out.raw"), "utf8")).toBe("keep me");
    expect(await partialFiles(dir)).toEqual([]);
  });

  it("export into a folder that does not exist exits 8 naming the folder", async () => {
    const result = await runCli(["export", "vol", "nowhere/out.raw"], cwd());
    expect(result.exitCode).toBe(8);
    expect(result.stderr).toMatch(/^thinp: folder nowhere does not exist\b[^\n]*\n$/);
  });

  it("export to stdout refuses a terminal, and import from stdin refuses one too", async (context) => {
    // `script` gives the command a terminal for stdin and stdout.
    if (spawnSync("script", ["--version"]).status !== 0) context.skip("script (util-linux) is not installed");
    const run = (args: string) =>
      runProgram("script", ["-qec", `${process.execPath} ${CLI_PATH} ${args}`, "/dev/null"], { cwd: dir, timeoutMs: 30_000 });
    const exported = await run("export vol -");
    expect(exported.stdout).toContain("thinp: stdout is a terminal; redirect it to a file or a pipe");
    const imported = await run("import vol -");
    expect(imported.stdout).toContain("thinp: stdin is a terminal; pipe the image in");
  });
});

describe("disk images in a container format are refused unless --raw", () => {
  let dir: string;
  const cwd = () => ({ cwd: dir });
  const hasQemuImg = spawnSync("qemu-img", ["--version"]).status === 0;

  beforeAll(async () => {
    dir = await makePool();
    await runCliOk(["create", "vol", "--size", "8M"], cwd());
  });
  afterAll(async () => {
    await removeTempDir(dir);
  });

  async function qemuImg(args: readonly string[]): Promise<void> {
    const result = await runProgram("qemu-img", args, { cwd: dir, timeoutMs: 30_000 });
    expect(result.exitCode, result.stderr).toBe(0);
  }

  const formats: { file: string; name: string; create: string[]; command?: string }[] = [
    { file: "disk.qcow2", name: "qcow2", create: ["-f", "qcow2"] },
    { file: "disk.qed", name: "QED", create: ["-f", "qed"] },
    { file: "sparse.vmdk", name: "VMDK", create: ["-f", "vmdk"] },
    { file: "descriptor.vmdk", name: "VMDK", create: ["-f", "vmdk", "-o", "subformat=monolithicFlat"] },
    { file: "disk.vdi", name: "VDI", create: ["-f", "vdi"] },
    { file: "disk.vhdx", name: "VHDX", create: ["-f", "vhdx"] },
    { file: "dynamic.vhd", name: "VHD", create: ["-f", "vpc"] },
    // A fixed VHD is raw bytes and a footer: qemu-img would take it for raw unless told.
    {
      file: "fixed.vhd",
      name: "VHD",
      create: ["-f", "vpc", "-o", "subformat=fixed"],
      command: "qemu-img convert -f vpc -O raw fixed.vhd fixed.vhd.raw",
    },
  ];

  for (const format of formats) {
    it(`${format.file} (qemu-img create ${format.create.join(" ")}) is refused with the qemu-img command that converts it`, async (context) => {
      if (!hasQemuImg) context.skip("qemu-img is not installed (apt-get install qemu-utils)");
      await qemuImg(["create", "-q", ...format.create, format.file, "1M"]);
      const before = await listVolumes(dir);
      const result = await runCli(["import", "vol", format.file], cwd());
      const command = format.command ?? `qemu-img convert -O raw ${format.file} ${format.file}.raw`;
      expect(result).toMatchObject({
        exitCode: 1,
        stdout: "",
        stderr:
          `thinp: ${format.file} is a ${format.name} image, not raw bytes; convert it first: ` +
          `${command} && thinp import vol ${format.file}.raw (or add --raw if it really is the disk's bytes)\n`,
      });
      expect(await listVolumes(dir)).toEqual(before);
      // The command it names works, and its output imports.
      await qemuImg(command.split(" ").slice(1));
      await runCliOk(["import", "vol", `${format.file}.raw`], cwd());
    });
  }

  it("--raw imports a qcow2 file's own bytes", async (context) => {
    if (!hasQemuImg) context.skip("qemu-img is not installed (apt-get install qemu-utils)");
    await qemuImg(["create", "-q", "-f", "qcow2", "raw.qcow2", "1M"]);
    const bytes = await readFile(path.join(dir, "raw.qcow2"));
    await runCliOk(["import", "vol", "raw.qcow2", "--raw"], cwd());
    const exported = await startCli(["export", "vol", "-"], cwd()).exited;
    expect(exported.stdout.subarray(0, bytes.length).equals(bytes)).toBe(true);
  });

  it("a qcow2 image on stdin is refused before anything is written", async (context) => {
    if (!hasQemuImg) context.skip("qemu-img is not installed (apt-get install qemu-utils)");
    await qemuImg(["create", "-q", "-f", "qcow2", "piped.qcow2", "1M"]);
    await runCliOk(["create", "fresh", "--size", "1M"], cwd());
    const cli = startCli(["import", "fresh", "-"], { ...cwd(), stdin: "pipe" });
    cli.stdin.end(await readFile(path.join(dir, "piped.qcow2")));
    const exit = await cli.exited;
    expect(exit.exitCode).toBe(1);
    expect(exit.stderr).toBe(
      "thinp: stdin is a qcow2 image, not raw bytes; convert it first: qemu-img convert -O raw FILE FILE.raw " +
        "&& thinp import fresh FILE.raw (or add --raw if it really is the disk's bytes)\n",
    );
    expect((await listVolumes(dir)).find((volume) => volume.name === "fresh")!.mappedBlocks).toBe(0);
  });
});

describe("while an import runs, the pool answers list and status", () => {
  let dir: string;
  const cwd = () => ({ cwd: dir });
  const metaPath = () => path.join(dir, "meta.img");
  const socketPath = () => `${metaPath()}.sock`;
  const first = seededBytes(2 * MiB, 0x1a);
  const second = seededBytes(3 * MiB, 0x1b);

  beforeAll(async () => {
    dir = await makePool();
    await runCliOk(["create", "base", "--size", "16M"], cwd());
    await writeFile(path.join(dir, "other.bin"), seededBytes(64 * KiB, 1));
  });
  afterAll(async () => {
    await removeTempDir(dir);
  });

  /** An import from stdin that has its first piece and waits for the rest: running for as long as the test likes. */
  async function startImport(): Promise<BackgroundCli> {
    // A socket left by an earlier test's killed import would be taken for this one's.
    expect(existsSync(socketPath())).toBe(false);
    const cli = startCli(["import", "base", "-"], { ...cwd(), stdin: "pipe" });
    cli.stdin.write(first);
    await waitFor("the import's control socket", () => existsSync(socketPath()), cli);
    return cli;
  }

  it("list and status answer, changes are refused naming the import, and the import then completes", async () => {
    const importing = await startImport();
    const busy = `thinp: pool ${metaPath()} is busy with an import into 'base' by process ${importing.pid}; retry when it finishes\n`;

    const listed = await runCli(["list", "--json"], cwd());
    expect(listed.exitCode, listed.stderr).toBe(0);
    expect(JSON.parse(listed.stdout).volumes.map((volume: { name: string }) => volume.name)).toEqual(["base"]);
    const status = await runCli(["status", "--json"], cwd());
    expect(status.exitCode, status.stderr).toBe(0);
    expect(JSON.parse(status.stdout)).toMatchObject({ volumeCount: 1, metaPath: metaPath() });

    for (const args of [
      ["create", "x", "--size", "1M"],
      ["snapshot", "base", "snap"],
      ["delete", "base"],
      ["resize", "base", "--size", "32M"],
      ["resize-pool", "--size", "2G"],
      ["import", "base", "other.bin"],
      ["export", "base", "out.raw"],
      ["check"],
      ["dump"],
      ["repair"],
    ]) {
      const refused = await runCli(args, cwd());
      expect(refused, args.join(" ")).toMatchObject({ exitCode: 7, stdout: "", stderr: busy });
    }

    importing.stdin.end(second);
    const exit = await importing.exited;
    expect(exit.exitCode, exit.stderr).toBe(0);
    expect(exit.stdout.toString()).toBe("imported 5 MiB from stdin into base at offset 0 (5 MiB written, 0 B of zero blocks discarded)\n");
    expect(existsSync(socketPath())).toBe(false);
    expect((await listVolumes(dir)).map((volume) => volume.name)).toEqual(["base"]);
    const exported = await startCli(["export", "base", "-"], cwd()).exited;
    const expected = Buffer.alloc(16 * MiB);
    Buffer.concat([first, second]).copy(expected);
    expect(exported.stdout.equals(expected)).toBe(true);
  });

  for (const signal of ["SIGINT", "SIGTERM"] as const) {
    it(`${signal} stops the import, commits nothing and removes the control socket`, async () => {
      const before = await listVolumes(dir);
      const importing = await startImport();
      importing.kill(signal);
      const exit = await importing.exited;
      expect(exit.stderr).toBe(`thinp: import interrupted by ${signal}; nothing was committed, 'base' is as it was\n`);
      expect(exit.exitCode).toBe(signal === "SIGINT" ? 130 : 143);
      expect(existsSync(socketPath())).toBe(false);
      expect(await listVolumes(dir)).toEqual(before);
    });
  }

  it("a failed import removes the control socket too", async () => {
    const importing = await startImport();
    importing.stdin.end(seededBytes(15 * MiB, 0x1c));
    const exit = await importing.exited;
    expect(exit.exitCode).toBe(2);
    expect(exit.stderr).toMatch(/^thinp: stdin \(more than \d+ bytes\) does not fit in 'base'/);
    expect(existsSync(socketPath())).toBe(false);
  });
});
