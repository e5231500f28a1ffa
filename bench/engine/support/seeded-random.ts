// A seeded generator, so every random key order and read offset the bench uses can be
// reproduced from the seed it prints.

import { at } from "../../../src/io/checked-index.js";

/** mulberry32: fast, 32-bit state, plenty for choosing keys. Returns [0, 1). */
export function seededRandom(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 2 ** 32;
  };
}

export function randomIndex(random: () => number, count: number): number {
  return Math.floor(random() * count);
}

/** Fisher-Yates, in place. */
export function shuffle(keys: number[], random: () => number): number[] {
  for (let i = keys.length - 1; i > 0; i--) {
    const j = randomIndex(random, i + 1);
    const kept = at(keys, i, "i counts down from the last key");
    keys[i] = at(keys, j, "j is at most i");
    keys[j] = kept;
  }
  return keys;
}

/** Virtual blocks 0, stride, 2*stride, ... : `count` of them. */
export function stridedKeys(count: number, stride: number): number[] {
  return Array.from({ length: count }, (_, i) => i * stride);
}
