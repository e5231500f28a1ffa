// diff, send and receive through the CLI, as the walk-through does it: two pools;
// `base` written, snapshot s1, more writes, snapshot s2; s1 sent whole and s2 as the changes
// since s1; the received s2 exports byte-identical, its pool checks clean and shares blocks;
// cut streams leave the receiving pool unchanged, byte for byte.

import { createHash } from "node:crypto";
import { readFile, writeFile } from "node:fs/promises";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { assertCliBuilt, makeTempDir, removeTempDir, runCli, runCliOk, runProgram, seededBytes, CLI_PATH } from "./support/cli-run.js";

const MiB = 1 << 20;
const B = 65536;
let dir: string;
const a = (args: string[]) => runCliOk([...args, "--pool", "a.meta"], { cwd: dir });
const b = (args: string[]) => runCliOk([...args, "--pool", "b.meta"], { cwd: dir });
/** A third pool holding only s1, for streams of s2 that it must refuse. */
const c = (args: string[]) => runCliOk([...args, "--pool", "c.meta"], { cwd: dir });
const sha256 = async (file: string) =>
  createHash("sha256")
    .update(await readFile(path.join(dir, file)))
    .digest("hex");

/** What the test wrote between s1 and s2: byte ranges, as `thinp diff --json` should list them. */
const WRITTEN = [
  { offset: 3 * MiB, length: 2 * B },
  { offset: 17 * MiB + 5000, length: 100 },
];

beforeAll(async () => {
  assertCliBuilt();
  dir = await makeTempDir();
  await runCliOk(["create-pool", "a.data", "a.meta", "--size", "256M"], { cwd: dir });
  await runCliOk(["create-pool", "b.data", "b.meta", "--size", "256M"], { cwd: dir });
  await runCliOk(["create-pool", "c.data", "c.meta", "--size", "256M"], { cwd: dir });
  await a(["create", "base", "--size", "32M"]);
  await writeFile(path.join(dir, "first.raw"), seededBytes(8 * MiB, 1));
  await a(["import", "base", "first.raw"]);
  await a(["snapshot", "base", "s1"]);
  for (const [i, range] of WRITTEN.entries()) {
    await writeFile(path.join(dir, `w${i}.raw`), seededBytes(range.length, 10 + i));
    await a(["import", "base", `w${i}.raw`, "--offset", String(range.offset), "--raw"]);
  }
  await a(["snapshot", "base", "s2"]);
}, 120_000);

afterAll(async () => {
  await removeTempDir(dir);
});

describe("thinp diff, send and receive", () => {
  it("diff --json lists exactly the blocks written between two snapshots", async () => {
    const diff = JSON.parse(await a(["diff", "s1", "s2", "--json"]));
    expect(diff).toEqual({
      from: "s1",
      to: "s2",
      blockBytes: B,
      ranges: [
        { kind: "different", offset: 3 * MiB, length: 2 * B },
        { kind: "right_only", offset: 17 * MiB, length: B },
      ],
    });
    expect(await a(["diff", "s2", "s2"])).toContain("map every block alike");
  });

  it("sends s1 whole and s2 as its changes, received byte-identical and sharing blocks", async () => {
    await runProgram("sh", ["-c", `node ${CLI_PATH} send s1 --pool a.meta | node ${CLI_PATH} receive s1 --pool b.meta`], {
      cwd: dir,
      timeoutMs: 60_000,
    }).then((result) => expect(result, result.stderr).toMatchObject({ exitCode: 0 }));
    const sent = JSON.parse(
      (await runCli(["send", "s2", "--from", "s1", "--output", "s2.stream", "--json", "--pool", "a.meta"], { cwd: dir })).stdout,
    );
    expect(sent).toMatchObject({ volume: "s2", from: "s1", dataBlocks: 3, unmappedBlocks: 0 });
    const received = JSON.parse(await b(["receive", "s2", "--input", "s2.stream", "--json"]));
    expect(received).toMatchObject({ volume: "s2", incremental: true, dataBlocks: 3, bytes: sent.bytes });
    for (const pool of ["a", "b"]) await runCliOk(["export", "s2", `${pool}.s2.raw`, "--pool", `${pool}.meta`], { cwd: dir });
    expect(await sha256("b.s2.raw")).toBe(await sha256("a.s2.raw"));
    expect(await b(["check"])).toContain("clean");
    const listed = JSON.parse(await b(["list", "--json"])).volumes;
    const s2 = listed.find((v: { name: string }) => v.name === "s2");
    expect(s2).toMatchObject({ mappedBlocks: 129, exclusiveBlocks: 3, sharedBlocks: 126 });
    const uuidIn = async (pool: string) =>
      JSON.parse(await runCliOk(["list", "--json", "--pool", pool], { cwd: dir })).volumes.find((v: { name: string }) => v.name === "s2")
        .uuid;
    const sentUuid = await uuidIn("a.meta");
    expect(sentUuid).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/);
    expect(await uuidIn("b.meta")).toBe(sentUuid);
    expect(received.uuid).toBe(sentUuid);
  });

  it("a send whose reader goes away exits 1 saying so, not as a bug", async () => {
    const result = await runProgram(
      "bash",
      ["-c", `node ${CLI_PATH} send s1 --pool a.meta 2>send.err | head -c 100 >/dev/null; echo "\${PIPESTATUS[0]}"`],
      { cwd: dir, timeoutMs: 60_000 },
    );
    expect(result.stdout.trim()).toBe("1");
    expect(await readFile(path.join(dir, "send.err"), "utf8")).toMatch(
      /^thinp: I\/O error on stdout: its reader went away before the output was whole \(EPIPE\)/,
    );
  });

  it("every cut of an incremental stream is refused with exit 9, leaving the pool byte for byte as it was", async () => {
    await a(["send", "s1", "--output", "s1.stream"]);
    await c(["receive", "s1", "--input", "s1.stream"]);
    await a(["send", "s2", "--from", "s1", "--output", "cut.stream"]);
    const whole = await readFile(path.join(dir, "cut.stream"));
    const before = await sha256("c.meta");
    // Inside the header, at each record boundary and inside each record, and just before the end.
    const cuts = [0, 1, 64, 127, 128, 160, 128 + 36 + B, whole.length - 80, whole.length - 44, whole.length - 1];
    for (const cut of cuts) {
      await writeFile(path.join(dir, "cut.part"), whole.subarray(0, cut));
      const result = await runCli(["receive", "s2", "--input", "cut.part", "--pool", "c.meta"], { cwd: dir });
      expect(result.exitCode, `cut at ${cut}: ${result.stderr}`).toBe(9);
      expect(result.stderr, `cut at ${cut}`).toMatch(/thinp: the send stream is unusable at byte \d+/);
      expect(await sha256("c.meta"), `cut at ${cut}`).toBe(before);
    }
    expect(JSON.parse(await c(["list", "--json"])).volumes.map((v: { name: string }) => v.name)).toEqual(["s1"]);
  });

  it("refuses an incremental stream onto a base that changed, naming it, with exit 9", async () => {
    await writeFile(path.join(dir, "poke.raw"), Buffer.alloc(512, 1));
    await c(["import", "s1", "poke.raw", "--raw"]);
    const result = await runCli(["receive", "s2", "--input", "s2.stream", "--pool", "c.meta"], { cwd: dir });
    expect(result.exitCode).toBe(9);
    expect(result.stderr).toMatch(/'s1' here is the stream's base, but it has changed/);
  });
});
