// An EIO or ENOSPC from the data or metadata file at the N-th I/O operation, for every N
// across a workload: the operation fails with a typed error, the pool stays consistent,
// and once the fault clears work goes on; nothing committed is lost and nothing reads as
// a value no write ever put there.

import { describe, expect, it } from "vitest";
import { ThinpError } from "../src/errors.js";
import { FaultInjectingStorageFile, FaultPlan, type FaultKind } from "../src/io/fault-injecting-storage-file.js";
import { MemoryStorageFile } from "../src/io/memory-storage-file.js";
import { checkMetadataFile } from "../src/thin/check.js";
import { DATA_BLOCK_BYTES } from "../src/thin/limits.js";
import { Pool } from "../src/thin/pool.js";
import { SeededRandom } from "./support/random.js";

type Step = {
  kind: "create" | "snapshot" | "write" | "discard" | "delete" | "commit";
  name: string;
  other?: string;
  offset?: number;
  bytes?: Buffer;
  length?: number;
};

const MiB = 1 << 20;

function workload(seed: number): Step[] {
  const random = new SeededRandom(seed);
  const steps: Step[] = [
    { kind: "create", name: "a" },
    { kind: "create", name: "b" },
  ];
  const names = ["a", "b"];
  for (let i = 0; i < 30; i++) {
    const roll = random.next();
    const name = random.pick(names);
    if (roll < 0.55) {
      const length = 512 * (1 + random.below(200));
      steps.push({ kind: "write", name, offset: 512 * random.below((2 * MiB - length) / 512), bytes: random.bytes(length) });
    } else if (roll < 0.65) {
      steps.push({ kind: "discard", name, offset: random.below(MiB), length: random.below(3 * DATA_BLOCK_BYTES) });
    } else if (roll < 0.75 && names.length < 5) {
      const snapshot = `s${i}`;
      steps.push({ kind: "snapshot", name: snapshot, other: name });
      names.push(snapshot);
    } else if (roll < 0.8 && names.length > 2) {
      const victim = names.splice(2 + random.below(names.length - 2), 1)[0]!;
      steps.push({ kind: "delete", name: victim });
    } else {
      steps.push({ kind: "commit", name: "" });
    }
  }
  steps.push({ kind: "commit", name: "" });
  return steps;
}

async function apply(pool: Pool, step: Step): Promise<void> {
  switch (step.kind) {
    case "create":
      await pool.createVolume(step.name, 2 * MiB);
      return;
    case "snapshot":
      await pool.snapshot(step.other!, step.name);
      return;
    case "write":
      await (await pool.volume(step.name)).write(step.offset!, step.bytes!);
      return;
    case "discard":
      await (await pool.volume(step.name)).discard(step.offset!, step.length!);
      return;
    case "delete":
      await pool.deleteVolume(step.name);
      return;
    case "commit":
      await pool.commit();
  }
}

function applyToModel(model: Map<string, Buffer>, step: Step): void {
  switch (step.kind) {
    case "create":
      model.set(step.name, Buffer.alloc(2 * MiB));
      return;
    case "snapshot":
      model.set(step.name, Buffer.from(model.get(step.other!)!));
      return;
    case "write":
      step.bytes!.copy(model.get(step.name)!, step.offset!);
      return;
    case "discard":
      model.get(step.name)!.fill(0, step.offset!, step.offset! + step.length!);
      return;
    case "delete":
      model.delete(step.name);
  }
}

/** Bytes a step since the last commit may have put in a volume (discards put zeros). */
function writtenBy(step: Step): { name: string; offset: number; bytes: Buffer } | null {
  if (step.kind === "write") return { name: step.name, offset: step.offset!, bytes: step.bytes! };
  if (step.kind === "discard") return { name: step.name, offset: step.offset!, bytes: Buffer.alloc(step.length!) };
  return null;
}

async function runWithFault(
  seed: number,
  failAt: number | null,
  kind: FaultKind,
  cacheBlocks?: number,
): Promise<{ operations: number; injected: number }> {
  const plan = new FaultPlan();
  const meta = new MemoryStorageFile("meta");
  const data = new MemoryStorageFile("data");
  const pool = await Pool.formatFiles(new FaultInjectingStorageFile(meta, plan), new FaultInjectingStorageFile(data, plan), {
    sizeBytes: 64 * MiB,
    cacheBlocks,
  });
  const start = plan.operations;
  if (failAt !== null) plan.failOperation(failAt, kind);
  let model = new Map<string, Buffer>();
  let committed = new Map<string, Buffer>();
  let sinceCommit: Step[] = [];
  const context = (i: number) => `seed ${seed}, ${kind} at operation ${failAt}, step ${i}`;

  let faulted = false;
  for (const [i, step] of workload(seed).entries()) {
    try {
      await apply(pool, step);
    } catch (error) {
      // A failed commit rolls back to the last one, so later steps may name volumes whose
      // creation was rolled back (or deletion undone): those refusals are expected.
      const code = (error as ThinpError).code;
      if (faulted && (code === "NO_SUCH_VOLUME" || code === "VOLUME_EXISTS")) continue;
      faulted = true;
      // A fault surfaces as a typed I/O error, never as an assertion or a crash.
      expect(error, context(i)).toBeInstanceOf(ThinpError);
      expect((error as ThinpError).code, `${context(i)}: ${(error as Error).message}`).toBe("IO_ERROR");
      plan.clear();
      // Once the fault clears, work goes on: the next commit succeeds.
      await pool.commit();
      // Whatever survived is the last commit plus, byte by byte, values written since.
      const survivors = new Map<string, Buffer>();
      for (const info of await pool.listVolumes()) {
        const bytes = await (await pool.volume(info.name)).read(0, info.sizeBytes);
        const base = committed.get(info.name) ?? model.get(info.name) ?? Buffer.alloc(info.sizeBytes);
        const current = model.get(info.name) ?? base;
        for (let at = 0; at < bytes.length; at++) {
          if (at % 4096 === 0) {
            const end = Math.min(at + 4096, bytes.length);
            const chunk = bytes.subarray(at, end);
            if (chunk.equals(base.subarray(at, end)) || chunk.equals(current.subarray(at, end))) {
              at = end - 1;
              continue;
            }
          }
          if (bytes[at] === base[at] || bytes[at] === current[at]) continue;
          const explained = [...sinceCommit, step].some((s) => {
            const w = writtenBy(s);
            return w !== null && at >= w.offset && at < w.offset + w.bytes.length && w.bytes[at - w.offset] === bytes[at];
          });
          expect(explained, `${context(i)}: '${info.name}' byte ${at} reads ${bytes[at]}, which nothing wrote`).toBe(true);
        }
        survivors.set(info.name, bytes);
      }
      for (const name of committed.keys()) {
        const deletedSince = [...sinceCommit, step].some((s) => s.kind === "delete" && s.name === name);
        if (!deletedSince) expect(survivors.has(name), `${context(i)}: committed volume '${name}' is gone`).toBe(true);
      }
      model = survivors;
      committed = new Map([...survivors].map(([name, bytes]) => [name, Buffer.from(bytes)]));
      sinceCommit = [];
      const report = await checkMetadataFile(meta, "meta");
      expect(report.problems, context(i)).toEqual([]);
      continue;
    }
    applyToModel(model, step);
    if (step.kind === "commit") {
      committed = new Map([...model].map(([name, bytes]) => [name, Buffer.from(bytes)]));
      sinceCommit = [];
    } else {
      sinceCommit.push(step);
    }
  }
  const report = await checkMetadataFile(meta, "meta");
  expect(report.problems, `seed ${seed}, ${kind} at ${failAt}: final check`).toEqual([]);
  const reopened = await Pool.openFiles(meta, data);
  for (const [name, bytes] of model) {
    expect(
      (await (await reopened.volume(name)).read(0, bytes.length)).equals(bytes),
      `seed ${seed}, ${kind} at ${failAt}: '${name}' after reopening`,
    ).toBe(true);
  }
  return { operations: plan.operations - start, injected: plan.injected };
}

describe("I/O faults at every operation", () => {
  const seed = 20261128;
  for (const kind of ["EIO", "ENOSPC"] as const) {
    it(`${kind} at each I/O operation of a workload fails cleanly and the pool recovers`, async () => {
      const { operations } = await runWithFault(seed, null, kind);
      expect(operations).toBeGreaterThan(50);
      let injected = 0;
      for (let failAt = 0; failAt < operations; failAt++) injected += (await runWithFault(seed, failAt, kind)).injected;
      expect(injected).toBe(operations);
    });
  }

  // With a cache of a few blocks, tree changes read nodes from the file, so faults land in
  // the middle of a change: the transaction must be rolled back, not carried on.
  it("EIO in the middle of tree changes rolls the transaction back to the last commit", async () => {
    const cacheBlocks = 4;
    const { operations } = await runWithFault(seed + 1, null, "EIO", cacheBlocks);
    let injected = 0;
    for (let failAt = 0; failAt < operations; failAt += 3) injected += (await runWithFault(seed + 1, failAt, "EIO", cacheBlocks)).injected;
    expect(injected).toBe(Math.ceil(operations / 3));
  });
});
