// A running server warns as LVM does: at 80, 85, 90 and 95 % use, each step once per
// crossing, again only after use has fallen back below it.

import { describe, expect, it } from "vitest";
import { UseSteps } from "../src/thin/space-warning.js";

describe("use steps", () => {
  it("says each step once as use rises, nothing while it stays, and again after it falls back", () => {
    const steps = new UseSteps();
    const seen = [10, 79.9, 80, 81, 84.9, 86, 91, 99, 100, 92, 96, 50, 80.5, null, 97].map((percent) => steps.crossed(percent));
    expect(seen).toEqual([null, null, 80, null, null, 85, 90, 95, null, null, 95, null, 80, null, 95]);
  });
});
