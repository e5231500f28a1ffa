// Another process holding a pool open, as the NBD server would, so a test can
// see the CLI refuse to touch a pool it does not own.

import { spawn, type ChildProcess } from "node:child_process";
import path from "node:path";
import { pathToFileURL } from "node:url";
import { REPO_ROOT } from "./cli-run.js";

const HOLDER_READY_TIMEOUT_MS = 30_000;

export interface PoolHolder {
  pid: number;
  /** Closes the pool (without committing) and waits for the holder to exit. */
  release(): Promise<void>;
}

export async function holdPool(metaPath: string): Promise<PoolHolder> {
  const poolModule = pathToFileURL(path.join(REPO_ROOT, "dist", "src", "thin", "pool.js")).href;
  const script = `
    const { Pool } = await import(${JSON.stringify(poolModule)});
    const pool = await Pool.open(${JSON.stringify(metaPath)});
    process.stdout.write("ready\\n");
    process.stdin.resume();
    process.stdin.on("end", async () => { await pool.close(); process.exit(0); });
  `;
  const child = spawn(process.execPath, ["--input-type=module", "-e", script], { stdio: ["pipe", "pipe", "pipe"] });
  await waitForReady(child);
  return {
    pid: child.pid!,
    release: () =>
      new Promise<void>((resolve) => {
        child.once("exit", () => resolve());
        child.stdin!.end();
      }),
  };
}

function waitForReady(child: ChildProcess): Promise<void> {
  return new Promise((resolve, reject) => {
    let stderr = "";
    const timer = setTimeout(() => {
      child.kill();
      reject(new Error(`pool holder not ready after ${HOLDER_READY_TIMEOUT_MS} ms\n${stderr}`));
    }, HOLDER_READY_TIMEOUT_MS);
    child.stderr!.setEncoding("utf8").on("data", (text: string) => (stderr += text));
    child.stdout!.setEncoding("utf8").on("data", (text: string) => {
      if (text.includes("ready")) {
        clearTimeout(timer);
        resolve();
      }
    });
    child.once("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`pool holder exited ${code} before it was ready\n${stderr}`));
    });
  });
}
