// Concurrency primitives for the engine. JavaScript runs one callback at a time, but an
// operation that awaits I/O can interleave with another; these say which may not.

/** Runs one critical section at a time, in arrival order. */
export class Mutex {
  private tail: Promise<unknown> = Promise.resolve();

  run<T>(section: () => Promise<T>): Promise<T> {
    const result = this.tail.then(section);
    this.tail = result.catch(() => undefined);
    return result;
  }
}

/** Serializes holders per key (per virtual block); different keys proceed concurrently. */
export class KeyedLocks {
  private readonly tails = new Map<number, Promise<void>>();

  get heldKeys(): number {
    return this.tails.size;
  }

  /** Resolves, once the key is free, to the function that frees it again. */
  async acquire(key: number): Promise<() => void> {
    const previous = this.tails.get(key) ?? Promise.resolve();
    let release!: () => void;
    const mine = new Promise<void>((resolve) => (release = resolve));
    const tail = previous.then(() => mine);
    this.tails.set(key, tail);
    await previous;
    return () => {
      release();
      if (this.tails.get(key) === tail) this.tails.delete(key);
    };
  }

  /**
   * Holds every key at once if none is held, without waiting: the function that frees them,
   * or null when one is held (the caller then waits its turn with runAll).
   */
  tryHoldAll(keys: readonly number[]): (() => void) | null {
    for (const key of keys) if (this.tails.has(key)) return null;
    let release!: () => void;
    const held = new Promise<void>((resolve) => (release = resolve));
    for (const key of keys) this.tails.set(key, held);
    return () => {
      release();
      for (const key of keys) if (this.tails.get(key) === held) this.tails.delete(key);
    };
  }

  /** Holds every key for the section; keys are taken in ascending order so holders never deadlock. */
  async runAll<T>(keys: number[], section: () => Promise<T>): Promise<T> {
    const sorted = [...new Set(keys)].sort((a, b) => a - b);
    const releases: (() => void)[] = [];
    try {
      for (const key of sorted) releases.push(await this.acquire(key));
      return await section();
    } finally {
      for (const release of releases) release();
    }
  }
}

/**
 * Many shared holders or one exclusive holder, granted in arrival order so an exclusive
 * waiter (a snapshot waiting for in-flight writes) is not starved by new shared ones.
 */
export class SharedGate {
  private sharedHolders = 0;
  private exclusiveHeld = false;
  private readonly queue: { exclusive: boolean; wake: () => void }[] = [];

  async shared<T>(section: () => Promise<T>): Promise<T> {
    if (this.exclusiveHeld || this.queue.length > 0) {
      await new Promise<void>((wake) => this.queue.push({ exclusive: false, wake }));
    } else {
      this.sharedHolders++;
    }
    try {
      return await section();
    } finally {
      this.sharedHolders--;
      this.dispatch();
    }
  }

  /** A shared hold taken at once if nobody holds or waits for it exclusively: its release, or null. */
  tryShared(): (() => void) | null {
    if (this.exclusiveHeld || this.queue.length > 0) return null;
    this.sharedHolders++;
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.sharedHolders--;
      this.dispatch();
    };
  }

  async exclusive<T>(section: () => Promise<T>): Promise<T> {
    if (this.exclusiveHeld || this.sharedHolders > 0 || this.queue.length > 0) {
      await new Promise<void>((wake) => this.queue.push({ exclusive: true, wake }));
    } else {
      this.exclusiveHeld = true;
    }
    try {
      return await section();
    } finally {
      this.exclusiveHeld = false;
      this.dispatch();
    }
  }

  private dispatch(): void {
    for (let next = this.queue[0]; next !== undefined; next = this.queue[0]) {
      if (next.exclusive) {
        if (this.exclusiveHeld || this.sharedHolders > 0) return;
        this.queue.shift();
        this.exclusiveHeld = true;
        next.wake();
        return;
      }
      if (this.exclusiveHeld) return;
      this.queue.shift();
      this.sharedHolders++;
      next.wake();
    }
  }
}
