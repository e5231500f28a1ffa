// The token an interrupted resumable receive leaves (formats/send-stream.md, "Resuming"):
// which stream it was taking in, and from which block a new stream must go on. The sender
// checks it against the volumes it holds; the receiver checks the resumed stream against
// what it kept. Opaque to users: a version, then base64url of MessagePack.

import { decode, encode } from "@msgpack/msgpack";
import { InvalidArgumentError } from "../errors.js";
import { isDecodedCount } from "../io/integers.js";
import type { VolumeIdentity } from "./api.js";

export interface ResumeToken {
  volume: VolumeIdentity;
  base: VolumeIdentity | null;
  /** Every block below this was received. */
  nextBlock: number;
}

const TOKEN_PREFIX = "1-";

export function encodeResumeToken(token: ResumeToken): string {
  const body = encode({
    u: token.volume.uuid,
    g: token.volume.generation,
    bu: token.base?.uuid ?? null,
    bg: token.base?.generation ?? 0,
    nb: token.nextBlock,
  });
  return TOKEN_PREFIX + Buffer.from(body).toString("base64url");
}

/** Throws a usage error (the token is what the user typed) naming what is wrong. */
export function decodeResumeToken(text: string): ResumeToken {
  const refuse = (why: string) =>
    new InvalidArgumentError(
      `'${text.length > 40 ? `${text.slice(0, 40)}...` : text}' is not a resume token: ${why}; copy it whole from 'thinp receive <name> --token'`,
    );
  if (!text.startsWith(TOKEN_PREFIX)) throw refuse("it does not start with '1-'");
  let raw: unknown;
  try {
    raw = decode(Buffer.from(text.slice(TOKEN_PREFIX.length), "base64url"));
  } catch {
    throw refuse("it does not decode");
  }
  const fields = raw as Record<string, unknown>;
  if (
    typeof fields !== "object" ||
    fields === null ||
    typeof fields.u !== "string" ||
    !isDecodedCount(fields.g) ||
    !(fields.bu === null || typeof fields.bu === "string") ||
    !isDecodedCount(fields.bg) ||
    !isDecodedCount(fields.nb)
  ) {
    throw refuse("fields are missing");
  }
  return {
    volume: { uuid: fields.u, generation: fields.g },
    base: fields.bu === null ? null : { uuid: fields.bu as string, generation: fields.bg },
    nextBlock: fields.nb,
  };
}
