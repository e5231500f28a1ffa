// npm run fuzz -- [--cases N] [--seed S] [--script I] [--replay HEX [--server memory|pool] [--destroy]] [--time-limit SECONDS]
// Fuzzes the NBD server in this process and prints cases per second. A failure prints the
// seed and script that replay it, and the bytes the client sent as hex.
// FUZZ_MEMORY_TRACE=1 prints memory use at each sample.

import { describeFailure, replayBytes, runFuzz, type FailureReport } from "./fuzzer.js";

const DEFAULT_CASES = 100_000;
/** The runner stops itself after this long whatever happens (the fuzzer's own limit is shorter). */
const WATCHDOG_MS = 15 * 60_000;

function argument(name: string): string | undefined {
  const at = process.argv.indexOf(`--${name}`);
  return at < 0 ? undefined : process.argv[at + 1];
}

function wholeNumber(name: string, fallback: number): number {
  const text = argument(name);
  if (text === undefined) return fallback;
  const value = Number(text);
  if (!Number.isSafeInteger(value) || value < 0) throw new Error(`--${name} takes a whole number`);
  return value;
}

function printFailure(failure: FailureReport): void {
  console.log(describeFailure(failure));
}

// Bugs in the fuzzer or the server must not leave the process hanging: this guard reports any
// error that escapes, and the watchdog ends the run if it somehow outlives its time limit.
let escapedErrors = 0;
process.on("uncaughtException", (error) => {
  escapedErrors++;
  console.error("uncaught exception:", error);
});
process.on("unhandledRejection", (error) => {
  escapedErrors++;
  console.error("unhandled rejection:", error);
});
const watchdog = setTimeout(() => {
  console.error(`fuzz: still running after ${WATCHDOG_MS / 60_000} minutes; stopping`);
  process.exit(3);
}, WATCHDOG_MS);
watchdog.unref();

async function main(): Promise<number> {
  const replayHex = argument("replay");
  if (replayHex !== undefined) {
    const server = argument("server") === "pool" ? "pool" : "memory";
    const failures = await replayBytes(
      Buffer.from(replayHex, "hex"),
      server,
      process.argv.includes("--destroy") ? "destroy" : "end",
      console.log,
    );
    failures.forEach(printFailure);
    console.log(failures.length === 0 ? "replay: the server coped" : "replay: FAILED");
    return failures.length === 0 ? 0 : 1;
  }
  const seed = wholeNumber("seed", Math.floor(Math.random() * 2 ** 31));
  const cases = wholeNumber("cases", DEFAULT_CASES);
  const script = argument("script") === undefined ? undefined : wholeNumber("script", 0);
  const timeLimitMs = wholeNumber("time-limit", 10 * 60) * 1000;
  console.log(
    `fuzz: seed ${seed}, ${script === undefined ? `${cases} cases` : `script ${script} only`}${(globalThis as { gc?: unknown }).gc ? "" : " (no --expose-gc: generous memory bound)"}`,
  );
  const report = await runFuzz({ seed, cases, onlyScript: script, timeLimitMs, log: (line) => console.log(`  ${line}`) });
  const kinds = [...report.kinds.entries()].sort((a, b) => b[1] - a[1]);
  console.log("cases by kind:");
  for (const [kind, count] of kinds) console.log(`  ${String(count).padStart(8)}  ${kind}`);
  console.log(
    `seed ${report.seed}: ${report.cases} cases in ${report.scripts} scripts over ${report.connections} connections, ` +
      `${(report.milliseconds / 1000).toFixed(1)} s, ${report.casesPerSecond} cases/s; ` +
      `RSS growth ${(report.rssGrowthBytes / 2 ** 20).toFixed(0)} MiB (bound ${(report.rssGrowthMaxBytes / 2 ** 20).toFixed(0)} MiB${report.gcAvailable ? ", after GC" : ""})`,
  );
  report.failures.forEach(printFailure);
  if (report.stoppedByTimeLimit) console.log(`stopped by the time limit before ${cases} cases`);
  const ok = report.failures.length === 0 && !report.stoppedByTimeLimit;
  console.log(ok ? "fuzz: no failures" : `fuzz: FAILED (replay with --seed ${report.seed})`);
  return ok ? 0 : 1;
}

main().then(
  (code) => process.exit(code === 0 && escapedErrors > 0 ? 1 : code),
  (error) => {
    console.error(error);
    process.exit(70);
  },
);
