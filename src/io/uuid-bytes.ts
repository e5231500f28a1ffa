// A UUID's 16 bytes and its RFC 4122 text, for every format that stores one.

import { assert } from "./assert.js";

export const UUID_BYTES = 16;

export function uuidText(bytes: Uint8Array): string {
  assert(bytes.length === UUID_BYTES, `uuid of ${bytes.length} bytes`);
  const hex = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString("hex");
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20, 32)}`;
}

export function uuidBytes(text: string): Buffer {
  const bytes = Buffer.from(text.replaceAll("-", ""), "hex");
  assert(bytes.length === UUID_BYTES, `uuid '${text}'`);
  return bytes;
}
