// The pre-shared key file nbdkit, qemu and libnbd share, as GnuTLS's `psktool` writes it:
// one `identity:hexkey` per line.

import { InvalidArgumentError } from "../src/errors.js";

/** Read whole; a key file of this size would already hold thousands of identities. */
export const PSK_FILE_BYTES_MAX = 1024 * 1024;
/** OpenSSL's limit for a PSK identity (PSK_MAX_IDENTITY_LEN is 128 in older releases). */
export const PSK_IDENTITY_BYTES_MAX = 128;
/** Shorter keys are guessable; psktool makes 32 bytes by default. */
export const PSK_KEY_BYTES_MIN = 16;
/** OpenSSL's PSK_MAX_PSK_LEN. */
export const PSK_KEY_BYTES_MAX = 256;

const HEX_KEY = /^(?:[0-9a-fA-F]{2})+$/;

/** Identity → key; refuses the whole file, naming the line, at the first line that is not `identity:hexkey`. */
export function parsePskFile(text: string, filePath: string): Map<string, Buffer> {
  const keys = new Map<string, Buffer>();
  const lines = text.split("\n");
  for (const [index, rawLine] of lines.entries()) {
    const line = rawLine.replace(/\r$/, "");
    if (line.trim() === "") continue;
    const where = `${filePath} line ${index + 1}`;
    const colon = line.indexOf(":");
    if (colon < 0) throw new InvalidArgumentError(`${where}: not 'identity:hexkey'`);
    const identity = line.slice(0, colon);
    const hexKey = line.slice(colon + 1).trim();
    if (identity === "" || Buffer.byteLength(identity, "utf8") > PSK_IDENTITY_BYTES_MAX) {
      throw new InvalidArgumentError(`${where}: the identity must have 1 to ${PSK_IDENTITY_BYTES_MAX} bytes`);
    }
    if (!HEX_KEY.test(hexKey)) throw new InvalidArgumentError(`${where}: the key of '${identity}' is not hexadecimal bytes`);
    const key = Buffer.from(hexKey, "hex");
    if (key.length < PSK_KEY_BYTES_MIN || key.length > PSK_KEY_BYTES_MAX) {
      throw new InvalidArgumentError(
        `${where}: the key of '${identity}' has ${key.length} bytes; use ${PSK_KEY_BYTES_MIN} to ${PSK_KEY_BYTES_MAX} (psktool makes 32)`,
      );
    }
    if (keys.has(identity)) throw new InvalidArgumentError(`${where}: '${identity}' has a key already`);
    keys.set(identity, key);
  }
  if (keys.size === 0)
    throw new InvalidArgumentError(`${filePath} holds no keys: write lines 'identity:hexkey', e.g. with psktool -u alice -p ${filePath}`);
  return keys;
}
