// Loop devices over scratch files, so a test can hand the CLI a real block device.
// Each is detached by `detachAll`, which afterAll runs whether or not the test passed.

import { spawnSync } from "node:child_process";

const LOSETUP_TIMEOUT_MS = 10_000;

export type LoopAttach = { device: string } | { unavailable: string };

export class LoopDevices {
  private readonly attached: string[] = [];

  /** `losetup --find --show FILE`; when the machine refuses (no permission, no loop module) says why. */
  attach(backingFile: string): LoopAttach {
    const result = spawnSync("losetup", ["--find", "--show", backingFile], { encoding: "utf8", timeout: LOSETUP_TIMEOUT_MS });
    if (result.error) return { unavailable: `losetup could not run: ${result.error.message}` };
    if (result.status !== 0) return { unavailable: `losetup --find --show failed: ${result.stderr.trim()}` };
    const device = result.stdout.trim();
    this.attached.push(device);
    return { device };
  }

  detachAll(): void {
    for (const device of this.attached.reverse()) spawnSync("losetup", ["-d", device], { timeout: LOSETUP_TIMEOUT_MS });
    this.attached.length = 0;
  }
}
