// A short run of the NBD fuzzer (test/fuzz/) in npm test; `npm run fuzz` runs it long.
// A failure message carries the seed, the script that replays it, and the bytes sent.

import { describe, expect, it } from "vitest";
import { describeFailure, runFuzz, type FuzzReport } from "./fuzz/fuzzer.js";

const CASES = 3000;
const FIXED_SEED = 20_240_611;

function failures(report: FuzzReport): string {
  return report.failures.map(describeFailure).join("\n");
}

describe("NBD server under fuzz", () => {
  it(`survives ${CASES} fuzz cases of a fixed seed, every flood and a handshake timeout; a good client is still served and memory stays bounded`, async () => {
    const report = await runFuzz({
      seed: FIXED_SEED,
      cases: CASES,
      floodEveryRounds: 1,
      warmUpRounds: 1,
      handshakeTimeoutMs: 2000,
      timeLimitMs: 60_000,
    });
    expect(report.failures, failures(report)).toEqual([]);
    expect(report.stoppedByTimeLimit).toBe(false);
    expect(report.cases).toBeGreaterThanOrEqual(CASES);
    expect(report.kinds.get("flood: idle handshakes left to time out")).toBeGreaterThan(0);
    expect(report.kinds.get("flood: options from a client that never reads")).toBeGreaterThan(0);
  });

  it(`survives ${CASES} fuzz cases of a random seed (THINP_SEED replays one)`, async () => {
    const seed = process.env.THINP_SEED ? Number(process.env.THINP_SEED) : Math.floor(Math.random() * 2 ** 31);
    console.log(
      `nbd fuzz seed ${seed} (replay: THINP_SEED=${seed} npx vitest run test/nbd-fuzz.test.ts, or npm run fuzz -- --seed ${seed} --cases ${CASES})`,
    );
    const report = await runFuzz({ seed, cases: CASES, floodEveryRounds: 2, warmUpRounds: 1, timeoutFlood: false, timeLimitMs: 60_000 });
    expect(report.failures, `seed ${seed}\n${failures(report)}`).toEqual([]);
    expect(report.stoppedByTimeLimit).toBe(false);
    expect(report.cases).toBeGreaterThanOrEqual(CASES);
  });
});
