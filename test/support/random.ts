// A small seeded generator (mulberry32) so every randomized test prints a seed that replays it.

export class SeededRandom {
  private state: number;

  constructor(readonly seed: number) {
    this.state = seed >>> 0;
  }

  next(): number {
    this.state = (this.state + 0x6d2b79f5) >>> 0;
    let t = this.state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }

  /** An integer in [0, bound). */
  below(bound: number): number {
    return Math.floor(this.next() * bound);
  }

  pick<T>(items: readonly T[]): T {
    return items[this.below(items.length)]!;
  }

  bytes(length: number): Buffer {
    const buffer = Buffer.alloc(length);
    const whole = length - (length % 4);
    for (let i = 0; i < whole; i += 4) buffer.writeUInt32LE(Math.floor(this.next() * 4294967296), i);
    for (let i = whole; i < length; i++) buffer[i] = this.below(256);
    return buffer;
  }
}

/** Seeds from THINP_SEED when replaying, else fresh ones. */
export function testSeeds(count: number): number[] {
  const fixed = process.env.THINP_SEED;
  if (fixed) return [Number(fixed)];
  const base = Math.floor(Math.random() * 2 ** 31);
  const total = Number(process.env.THINP_SEEDS ?? count);
  return Array.from({ length: total }, (_, i) => base + i);
}
