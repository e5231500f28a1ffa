// diff, send, receive and dump while `thinp serve` owns the pool: through the control
// socket, from holds the server keeps for as long as each command runs, with fio writing
// to another volume of the same pool all the while; and receive into a served pool, whose
// new volume is an NBD export as soon as it is published.

import { spawn, type ChildProcess } from "node:child_process";
import { readFile } from "node:fs/promises";
import path from "node:path";
import { afterEach, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { Pool } from "../src/thin/pool.js";
import { EXIT_STREAM } from "../cli/exit-codes.js";
import { runToolOk } from "./support/cli-real-clients.js";
import { CLI_PATH, assertCliBuilt, makeTempDir, removeTempDir, runCli, runCliOk, runProgram, seededBytes } from "./support/cli-run.js";
import { eventually, killAllServers, startServe, withTimeout, type ServeProcess } from "./support/cli-serve-process.js";

const MiB = 1024 * 1024;
const BLOCK = 65536;
/** fio's load lasts this long: longer than the commands that run beside it. */
const FIO_RUNTIME_S = 8;
/** A pipeline of two CLIs moving a few MiB. */
const PIPELINE_TIMEOUT_MS = 60_000;

let dir: string;
const cwd = () => ({ cwd: dir });
const metaA = () => path.join(dir, "a.meta");
const metaB = () => path.join(dir, "b.meta");
const socketA = () => path.join(dir, "a.nbd");
const socketB = () => path.join(dir, "b.nbd");
const uri = (socket: string, name: string) => `nbd+unix:///${name}?socket=${socket}`;
const children: ChildProcess[] = [];

/** `thinp send ... | thinp receive ...`, failing with both commands' stderr unless both succeed. */
async function pipeline(send: string[], receive: string[]): Promise<string> {
  const cli = (args: string[]) => [process.execPath, CLI_PATH, ...args].map((word) => `'${word}'`).join(" ");
  const result = await runProgram("bash", ["-o", "pipefail", "-c", `${cli(send)} | ${cli(receive)}`], {
    cwd: dir,
    timeoutMs: PIPELINE_TIMEOUT_MS,
  });
  if (result.exitCode !== 0) throw new Error(`pipeline exited ${result.exitCode}\n${result.stderr}`);
  return result.stdout;
}

interface Status {
  volumeCount: number;
  hiddenVolumeCount: number;
}

async function status(meta: string): Promise<Status> {
  return JSON.parse(await runCliOk(["status", "--json", "--pool", meta], cwd()));
}

async function listed(meta: string): Promise<{ name: string; sharedBlocks: number }[]> {
  return JSON.parse(await runCliOk(["list", "--json", "--pool", meta], cwd())).volumes;
}

async function exported(meta: string, name: string): Promise<Buffer> {
  const file = path.join(dir, `${path.basename(meta)}-${name}.raw`);
  await runCliOk(["export", name, file, "--force", "--pool", meta], cwd());
  return readFile(file);
}

/** fio writing and verifying random 4 KiB blocks of `name` for FIO_RUNTIME_S; resolves its exit code. */
function startFio(socket: string, name: string): { exited: Promise<number | null>; running: () => boolean } {
  const child = spawn(
    "fio",
    [
      "--name=load",
      "--ioengine=nbd",
      `--uri=${uri(socket, name)}`,
      "--rw=randwrite",
      "--bs=4k",
      "--size=16M",
      "--iodepth=8",
      "--time_based",
      `--runtime=${FIO_RUNTIME_S}`,
    ],
    { stdio: "ignore", timeout: (FIO_RUNTIME_S + 30) * 1000 },
  );
  children.push(child);
  let done = false;
  const exited = new Promise<number | null>((resolve, reject) => {
    child.once("error", reject);
    child.once("exit", (code) => {
      done = true;
      resolve(code);
    });
  });
  return { exited, running: () => !done };
}

/** The XML with the superblock's transaction id left out: releasing the dump's holds is a commit. */
function withoutTransaction(xml: string): string {
  return xml.replace(/^(<superblock [^>]*?)transaction="\d+"/m, '$1transaction=""');
}

beforeAll(() => assertCliBuilt());
beforeEach(async () => {
  dir = await makeTempDir();
  const a = await Pool.create(path.join(dir, "a.data"), metaA(), { sizeBytes: 512 * MiB });
  await a.createVolume("base", 32 * MiB);
  await a.createVolume("busy", 32 * MiB);
  const base = await a.volume("base");
  await base.write(0, seededBytes(2 * MiB, 7));
  await a.snapshot("base", "s1");
  await a.commit();
  await a.close();
  const b = await Pool.create(path.join(dir, "b.data"), metaB(), { sizeBytes: 512 * MiB });
  await b.commit();
  await b.close();
});
afterEach(async () => {
  killAllServers();
  for (const child of children.splice(0)) if (child.exitCode === null) child.kill("SIGKILL");
  await removeTempDir(dir);
});

describe("history while served", () => {
  it("diff, send and dump read a served pool while fio writes to it, and the copy is byte-identical and shares its blocks", async () => {
    const served = await startServe(["--pool", metaA(), "--socket", socketA()], cwd());
    const fio = startFio(socketA(), "busy");
    // What changes between s1 and s2: a block s1 maps, overwritten; two it does not, written.
    await runToolOk("qemu-io", ["-f", "raw", uri(socketA(), "base"), "-c", "write -P 0xcd 64k 64k", "-c", "write -P 0xab 8M 128k"]);
    await runCliOk(["snapshot", "base", "s2", "--pool", metaA()], cwd());

    const diff = JSON.parse(await runCliOk(["diff", "s1", "s2", "--json", "--pool", metaA()], cwd()));
    expect(diff.ranges).toEqual([
      { kind: "different", offset: BLOCK, length: BLOCK },
      { kind: "right_only", offset: 8 * MiB, length: 2 * BLOCK },
    ]);
    await pipeline(["send", "s1", "--pool", metaA()], ["receive", "s1", "--pool", metaB()]);
    const received = await pipeline(["send", "s2", "--from", "s1", "--pool", metaA()], ["receive", "s2", "--json", "--pool", metaB()]);
    expect(JSON.parse(received)).toMatchObject({ volume: "s2", incremental: true, dataBlocks: 3, unmappedBlocks: 0 });
    // The server was serving fio all along, and every hold has gone.
    expect(fio.running()).toBe(true);
    expect(await status(metaA())).toMatchObject({ volumeCount: (await listed(metaA())).length, hiddenVolumeCount: 0 });
    expect(await withTimeout(fio.exited, 60_000, () => "fio did not finish")).toBe(0);

    const live = await runCliOk(["dump", "--pool", metaA()], cwd());
    expect(await served.stop()).toBe(0);
    const atRest = await runCliOk(["dump", "--pool", metaA()], cwd());
    expect(withoutTransaction(live)).toBe(withoutTransaction(atRest));
    expect(live).toContain('<device dev_id="2"');

    expect((await exported(metaB(), "s2")).equals(await exported(metaA(), "s2"))).toBe(true);
    expect((await exported(metaB(), "s1")).equals(await exported(metaA(), "s1"))).toBe(true);
    expect((await runCli(["check", "--pool", metaB()], cwd())).exitCode).toBe(0);
    const copies = new Map((await listed(metaB())).map((volume) => [volume.name, volume]));
    // s2 holds s1's blocks but the three that changed.
    expect(copies.get("s2")?.sharedBlocks).toBe((2 * MiB) / BLOCK - 1);
  });

  it("receive into a served pool goes through its control socket, and the new volume is exported when published", async () => {
    const served = await startServe(["--pool", metaB(), "--socket", socketB()], cwd());
    await pipeline(["send", "s1", "--pool", metaA()], ["receive", "s1", "--pool", metaB()]);
    expect((await runToolOk("nbdinfo", ["--size", uri(socketB(), "s1")])).trim()).toBe(String(32 * MiB));
    const copy = path.join(dir, "copy.raw");
    await runToolOk("nbdcopy", [uri(socketB(), "s1"), copy]);
    expect((await readFile(copy)).equals(await exported(metaA(), "s1"))).toBe(true);

    // A stream cut short leaves nothing, with the status a receive at rest exits with.
    const stream = path.join(dir, "base.stream");
    await runCliOk(["send", "base", "--output", stream, "--pool", metaA()], cwd());
    const cut = path.join(dir, "cut.stream");
    await runToolOk("bash", ["-c", `head -c 1000000 '${stream}' > '${cut}'`]);
    const before = await status(metaB());
    const servedCut = await runCli(["receive", "cut", "--input", cut, "--pool", metaB()], cwd());
    expect(servedCut.stderr).toContain("the stream was cut short");
    expect(await status(metaB())).toMatchObject({ volumeCount: before.volumeCount, hiddenVolumeCount: before.hiddenVolumeCount });
    // A refusal keeps its status too.
    const servedMissing = await runCli(["send", "nope", "--pool", metaB()], cwd());

    // Resumable: the token the served pool keeps takes the rest of the stream through the server.
    const kept = await runCli(["receive", "big", "--resumable", "--input", cut, "--pool", metaB()], cwd());
    expect(kept.stderr).toContain("what came is kept");
    const token = (await runCliOk(["receive", "big", "--token", "--pool", metaB()], cwd())).trim();
    await pipeline(["send", "base", "--resume-token", token, "--pool", metaA()], ["receive", "big", "--resume", "--pool", metaB()]);
    expect((await runToolOk("nbdinfo", ["--size", uri(socketB(), "big")])).trim()).toBe(String(32 * MiB));

    expect(await served.stop()).toBe(0);
    // The status a cut stream gets at rest.
    expect(servedCut.exitCode).toBe(EXIT_STREAM);
    expect(servedMissing.exitCode).toBe((await runCli(["send", "nope", "--pool", metaB()], cwd())).exitCode);
    expect((await exported(metaB(), "big")).equals(await exported(metaA(), "base"))).toBe(true);
    expect((await runCli(["check", "--pool", metaB()], cwd())).exitCode).toBe(0);
  });

  it("a send holds its volume while it runs, and a server killed meanwhile leaves no hold once it restarts", async () => {
    let served: ServeProcess = await startServe(["--pool", metaA(), "--socket", socketA()], cwd());
    // A stream several times what one read of it carries.
    await runToolOk("qemu-io", ["-f", "raw", uri(socketA(), "base"), "-c", "write -P 0x5a 0 24M"]);
    const listedCount = (await listed(metaA())).length;
    // Nobody reads its output: once the pipe is full the send waits, holding base.
    const send = spawn(process.execPath, [CLI_PATH, "send", "base", "--pool", metaA()], { cwd: dir, stdio: ["ignore", "pipe", "ignore"] });
    children.push(send);
    await eventually(async () => (await status(metaA())).hiddenVolumeCount === 1, 20_000, "the send's hold");
    served.kill();
    send.kill("SIGKILL");
    served = await startServe(["--pool", metaA(), "--socket", socketA()], cwd());
    expect(served.stdout + served.stderr).toMatch(/released 1 hold/);
    expect(await status(metaA())).toMatchObject({ volumeCount: listedCount, hiddenVolumeCount: 0 });
    expect(await served.stop()).toBe(0);
    expect((await runCli(["check", "--pool", metaA()], cwd())).exitCode).toBe(0);
  });
});
