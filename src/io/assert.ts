// Programmer errors: an invariant that does not hold means a bug, and carrying on would
// risk writing corrupt metadata. These are never caught and turned into user errors.

export class AssertionError extends Error {
  override name = "AssertionError";
}

export function assert(condition: unknown, message: string): asserts condition {
  if (!condition) throw new AssertionError(`assertion failed: ${message}`);
}
