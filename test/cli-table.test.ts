import { describe, expect, it } from "vitest";
import { renderFields, renderTable } from "../cli/table.js";

describe("renderTable", () => {
  it("pads text left and numbers right, with no trailing spaces", () => {
    const text = renderTable(
      [
        { header: "NAME", align: "left" },
        { header: "SIZE", align: "right" },
        { header: "ORIGIN", align: "left" },
      ],
      [
        ["base", "256 MiB", "-"],
        ["web1-long", "1 GiB", "base"],
      ],
    );
    expect(text).toBe(["NAME          SIZE  ORIGIN", "base       256 MiB  -", "web1-long    1 GiB  base", ""].join("\n"));
  });

  it("prints the header alone for no rows", () => {
    expect(renderTable([{ header: "NAME", align: "left" }], [])).toBe("NAME\n");
  });
});

describe("renderFields", () => {
  it("lines values up after the longest label", () => {
    expect(
      renderFields([
        ["a", "1"],
        ["longer", "2"],
      ]),
    ).toBe("a       1\nlonger  2\n");
  });
});
