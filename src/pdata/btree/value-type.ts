/**
 * What a B-tree needs to know about the values in its leaves: their size, and how to
 * adjust whatever they reference when a leaf gains or loses a referrer (a shared leaf
 * copied by shadowing, or a leaf freed with its tree).
 */
export interface ValueType {
  readonly valueBytes: number;
  increment(value: Buffer): void;
  decrement(value: Buffer): void | Promise<void>;
}

/** Values that reference nothing, such as volume ids in the name index. */
export function plainValues(valueBytes: number): ValueType {
  return { valueBytes, increment() {}, decrement() {} };
}
