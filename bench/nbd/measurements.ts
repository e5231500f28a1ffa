// Samples per metric and server. Each number is measured in several rounds with the servers
// taking turns, so a change in background load lands on every server rather than on
// whichever happened to run then; the table shows the median and the spread. The same ids
// key the server CPU per request of each row, in a second instance.

import { assert } from "../../src/io/assert.js";
import { at } from "../../src/io/checked-index.js";

export type MetricId =
  | "seqWrite"
  | "seqWriteFlushed"
  | "seqRead"
  | "randRead"
  | "randWrite"
  | "snapshotWrite"
  | "randReadConnections"
  | "randWriteConnections"
  | "flushEachWrite"
  | "commitReadAlone"
  | "commitReadWithWriter"
  | "commitReadDrop"
  | "commitWriterWrite";

/** A drop in percent goes below zero when the second job happens to run faster. */
const SIGNED_METRICS: ReadonlySet<MetricId> = new Set(["commitReadDrop"]);

export class Measurements {
  private readonly samples = new Map<MetricId, Map<string, number[]>>();

  record(metric: MetricId, label: string, value: number): void {
    assert(Number.isFinite(value) && (value >= 0 || SIGNED_METRICS.has(metric)), `${metric} of ${label} is a rate, got ${value}`);
    let row = this.samples.get(metric);
    if (!row) this.samples.set(metric, (row = new Map()));
    let values = row.get(label);
    if (!values) row.set(label, (values = []));
    values.push(value);
  }

  /** The samples of one metric and server, in the order taken; empty if never measured. */
  of(metric: MetricId, label: string): readonly number[] {
    return this.samples.get(metric)?.get(label) ?? [];
  }
}

export function median(values: readonly number[]): number {
  assert(values.length > 0, "median of no samples");
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  const upper = at(sorted, middle, "there are samples");
  return sorted.length % 2 === 1 ? upper : (at(sorted, middle - 1, "an even count of samples is two or more") + upper) / 2;
}
