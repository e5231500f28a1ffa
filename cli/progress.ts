// A byte-count progress bar for import and export, drawn only when stderr is a
// terminal: piped or logged output stays free of control characters.

import cliProgress from "cli-progress";
import { formatSize } from "./size.js";

export interface Progress {
  advance(byteCount: number): void;
  stop(): void;
}

const silentProgress: Progress = { advance() {}, stop() {} };

export function startProgress(label: string, totalBytes: number, stream: NodeJS.WriteStream = process.stderr): Progress {
  if (!stream.isTTY || totalBytes === 0) return silentProgress;
  const bar = new cliProgress.SingleBar({
    stream,
    format: `${label} [{bar}] {percentage}% | {done} of {size} | ETA {eta_formatted}`,
    hideCursor: true,
    clearOnComplete: false,
  });
  let doneBytes = 0;
  bar.start(totalBytes, 0, { done: formatSize(0), size: formatSize(totalBytes) });
  return {
    advance(byteCount: number) {
      doneBytes += byteCount;
      bar.update(doneBytes, { done: formatSize(doneBytes) });
    },
    stop() {
      bar.stop();
    },
  };
}
