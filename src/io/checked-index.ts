// Indexed access where the caller knows the element is there: a loop bound, a range checked
// just before, a table built with one entry per key. With noUncheckedIndexedAccess the
// compiler cannot see that, so the knowledge is asserted, with the reason, instead of a `!`.
// Values that come from disk or a user are range-checked by their reader and get a typed
// error there; these are for what is true by construction.

import { assert } from "./assert.js";

/** The element at `index`; `why` says why it is always there. */
export function at<T>(array: ArrayLike<T>, index: number, why: string): T {
  const element = array[index];
  assert(element !== undefined, why);
  return element;
}

/** Adds one to the count at `index`, which the caller has checked is inside `counts`. */
export function countOne(counts: Uint32Array, index: number, why: string): void {
  const count = counts[index];
  assert(count !== undefined, why);
  counts[index] = count + 1;
}
