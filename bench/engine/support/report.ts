// Results as markdown: each section a heading, a few lines on how it was measured, and
// tables whose columns are padded so the raw stdout reads as well as the rendered file.

export interface Table {
  headers: string[];
  rows: string[][];
  /** Columns to right-align (numbers). */
  numeric?: boolean[];
}

export interface Section {
  title: string;
  method: string[];
  tables: Table[];
  findings?: string[];
}

export function renderSection(section: Section): string {
  const parts = [`## ${section.title}`, "", ...section.method.map((line) => `${line}`), ""];
  for (const table of section.tables) parts.push(renderTable(table), "");
  if (section.findings && section.findings.length > 0) {
    parts.push(...section.findings.map((line) => `- ${line}`), "");
  }
  return parts.join("\n");
}

export function renderTable(table: Table): string {
  const widths = table.headers.map((header, column) => Math.max(header.length, 3, ...table.rows.map((row) => (row[column] ?? "").length)));
  const rightAligned = (column: number) => table.numeric?.[column] ?? false;
  const line = (cells: string[]) =>
    `| ${cells
      .map((cell, column) => {
        const width = widths[column] ?? 0;
        /* a cell past the headers is not padded */ return rightAligned(column) ? cell.padStart(width) : cell.padEnd(width);
      })
      .join(" | ")} |`;
  const rule = `|${widths.map((width, column) => (rightAligned(column) ? `${"-".repeat(width + 1)}:` : "-".repeat(width + 2))).join("|")}|`;
  return [line(table.headers), rule, ...table.rows.map(line)].join("\n");
}

/** 1234567 -> "1,234,567"; rates and counts are easiest to compare with separators. */
export function formatCount(value: number): string {
  return Math.round(value).toLocaleString("en-US");
}

/** Three significant digits for quantities that span orders of magnitude. */
export function formatMs(milliseconds: number): string {
  if (milliseconds >= 100) return milliseconds.toFixed(0);
  if (milliseconds >= 10) return milliseconds.toFixed(1);
  if (milliseconds >= 1) return milliseconds.toFixed(2);
  return milliseconds.toFixed(3);
}

export function formatRatio(ratio: number): string {
  return ratio >= 10 ? ratio.toFixed(1) : ratio.toFixed(2);
}

export function formatPercent(fraction: number): string {
  return `${(fraction * 100).toFixed(1)} %`;
}

export function mebibytes(byteCount: number): string {
  return (byteCount / 2 ** 20).toFixed(1);
}

export function gibibytes(byteCount: number): string {
  return (byteCount / 2 ** 30).toFixed(1);
}

/** Progress goes to stderr so stdout stays the markdown report. */
export function progress(message: string): void {
  process.stderr.write(`[bench ${(performance.now() / 1000).toFixed(1).padStart(6)} s] ${message}\n`);
}
