// JavaScript numbers are exact only up to 2^53. Every size, offset and block index in
// thinp passes through these helpers so that nothing silently wraps or rounds.

import { assert } from "./assert.js";

export function isSafeCount(value: number): boolean {
  return Number.isSafeInteger(value) && value >= 0;
}

/** isSafeCount for a value decoded from outside (MessagePack), which may not be a number at all. */
export function isDecodedCount(value: unknown): value is number {
  return typeof value === "number" && isSafeCount(value);
}

export function checkedAdd(a: number, b: number): number {
  const sum = a + b;
  assert(isSafeCount(a) && isSafeCount(b) && Number.isSafeInteger(sum), `overflow adding ${a} + ${b}`);
  return sum;
}

export function checkedMul(a: number, b: number): number {
  const product = a * b;
  assert(isSafeCount(a) && isSafeCount(b) && Number.isSafeInteger(product), `overflow multiplying ${a} * ${b}`);
  return product;
}

export function divCeil(value: number, divisor: number): number {
  assert(isSafeCount(value) && divisor > 0, `divCeil(${value}, ${divisor})`);
  return Math.ceil(value / divisor);
}

export function isAligned(value: number, alignment: number): boolean {
  return value % alignment === 0;
}

export function alignDown(value: number, alignment: number): number {
  return value - (value % alignment);
}

export function alignUp(value: number, alignment: number): number {
  return divCeil(value, alignment) * alignment;
}

/** Reads an unsigned 64-bit little-endian integer that must fit in 2^53. */
export function readU64(buf: Uint8Array, offset: number): number {
  const view = Buffer.isBuffer(buf) ? buf : Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength);
  const low = view.readUInt32LE(offset);
  const high = view.readUInt32LE(offset + 4);
  if (high >= 0x200000) return Number.NaN; // beyond 2^53: callers reject NaN as corrupt
  return high * 0x1_0000_0000 + low;
}

export function writeU64(buf: Buffer, offset: number, value: number): void {
  assert(isSafeCount(value), `u64 field value ${value}`);
  buf.writeUInt32LE(value % 0x1_0000_0000, offset);
  buf.writeUInt32LE(Math.floor(value / 0x1_0000_0000), offset + 4);
}
