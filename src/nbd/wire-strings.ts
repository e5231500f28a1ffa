// Strings on the wire: UTF-8, no NUL, at most NAME_BYTES_MAX bytes (the spec's rule for
// export names, queries and messages).

import { at } from "../io/checked-index.js";
import { NAME_BYTES_MAX } from "./limits.js";

const strictUtf8 = new TextDecoder("utf-8", { fatal: true });

export type DecodedString = { ok: true; value: string } | { ok: false; reason: string };

export function decodeWireString(bytes: Uint8Array): DecodedString {
  if (bytes.length > NAME_BYTES_MAX) {
    return { ok: false, reason: `string of ${bytes.length} bytes is longer than ${NAME_BYTES_MAX}` };
  }
  if (bytes.includes(0)) return { ok: false, reason: "string contains a NUL byte" };
  try {
    return { ok: true, value: strictUtf8.decode(bytes) };
  } catch {
    return { ok: false, reason: "string is not valid UTF-8" };
  }
}

/** UTF-8 bytes of `text`, cut at a character boundary to at most `byteLengthMax` bytes. */
export function encodeTruncatedString(text: string, byteLengthMax: number): Buffer {
  const bytes = Buffer.from(text, "utf8");
  if (bytes.length <= byteLengthMax) return bytes;
  let end = byteLengthMax;
  // A UTF-8 continuation byte is 10xxxxxx; back up to the start of the character it belongs to.
  while (end > 0 && (at(bytes, end, "end starts below the length and only goes down") & 0xc0) === 0x80) end--;
  return bytes.subarray(0, end);
}
