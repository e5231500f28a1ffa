// A byte-count progress bar for import and export, drawn only when stderr is a
// terminal: piped or logged output stays free of control characters. A stream
// (stdin) has no size to measure against: it shows a running count instead.

import cliProgress from "cli-progress";
import { formatSize } from "./size.js";

export interface Progress {
  advance(byteCount: number): void;
  stop(): void;
}

const silentProgress: Progress = { advance() {}, stop() {} };

/** `totalBytes` null: the end is not known until it is reached. */
export function startProgress(label: string, totalBytes: number | null, stream: NodeJS.WriteStream = process.stderr): Progress {
  if (!stream.isTTY || totalBytes === 0) return silentProgress;
  const bar = new cliProgress.SingleBar({
    stream,
    format: totalBytes === null ? `${label} {done} so far` : `${label} [{bar}] {percentage}% | {done} of {size} | ETA {eta_formatted}`,
    hideCursor: true,
    clearOnComplete: false,
  });
  let doneBytes = 0;
  // Without a total the bar is only a counter: its own total is never shown or reached.
  bar.start(totalBytes ?? Number.MAX_SAFE_INTEGER, 0, { done: formatSize(0), size: totalBytes === null ? "" : formatSize(totalBytes) });
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
