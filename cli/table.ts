// Plain-text tables for the human form of `list` and `status`.

import { assert } from "../src/io/assert.js";
import { at } from "../src/io/checked-index.js";

export type Align = "left" | "right";

export interface Column {
  header: string;
  align: Align;
}

/** Columns separated by two spaces; no trailing spaces, so output diffs cleanly. */
export function renderTable(columns: readonly Column[], rows: readonly (readonly string[])[]): string {
  for (const row of rows) assert(row.length === columns.length, `row of ${row.length} cells for ${columns.length} columns`);
  const widths = columns.map((column, columnIndex) =>
    Math.max(column.header.length, ...rows.map((row) => at(row, columnIndex, "every row has a cell per column").length)),
  );
  const renderRow = (cells: readonly string[]): string =>
    columns
      .map((column, columnIndex) => {
        const cell = at(cells, columnIndex, "every row has a cell per column");
        const width = at(widths, columnIndex, "one width per column");
        return column.align === "right" ? cell.padStart(width) : cell.padEnd(width);
      })
      .join("  ")
      .trimEnd();
  const lines = [renderRow(columns.map((column) => column.header)), ...rows.map(renderRow)];
  return lines.join("\n") + "\n";
}

/** Label/value pairs, labels padded to line the values up. */
export function renderFields(fields: readonly (readonly [label: string, value: string])[]): string {
  const labelWidth = Math.max(0, ...fields.map(([label]) => label.length));
  return fields.map(([label, value]) => `${label.padEnd(labelWidth)}  ${value}`).join("\n") + "\n";
}
