// Random options for option haggling, each with what formats/nbd-protocol.md says the
// server must answer. The generator tracks what earlier options changed (structured
// replies, the meta context selection), because later answers depend on it.

import { NAME_BYTES_MAX, OPTION_BYTES_MAX } from "../../src/nbd/limits.js";
import * as P from "../../src/nbd/protocol.js";
import type { SeededRandom } from "../support/random.js";
import type { FuzzServer } from "./fuzz-target.js";
import { pickWeighted } from "./request-generator.js";
import { infoRequestData, metaContextData, optionBytes } from "./wire-encoding.js";

/** What must come back for one option. */
export type OptionExpectation =
  /** Replies of the types in `before`, ending with one whose type is in `final`. */
  | { kind: "replies"; final: number[]; before: number[]; check?: (replies: { replyType: number; data: Buffer }[]) => string | null }
  /** The server hangs up without another byte. */
  | { kind: "close" }
  /** ACK, then the server hangs up. */
  | { kind: "abort" }
  /** Size and flags (and padding), then transmission. */
  | { kind: "export-name"; exportName: string }
  /** INFO replies and ACK, then transmission. */
  | { kind: "go"; exportName: string; infoTypes: number[] };

export interface OptionStep {
  /** The generator's category, for the case counts. */
  kind?: string;
  label: string;
  option: number;
  bytes: Buffer;
  expect: OptionExpectation;
}

export interface HaggleState {
  structured: boolean;
  noZeroes: boolean;
}

/** busy: GO and EXPORT_NAME refuse it; broken: every lookup fails with an engine error. */
type NameStatus = "exists" | "busy" | "broken" | "unknown" | "invalid";
interface NameCase {
  bytes: Buffer;
  status: NameStatus;
  label: string;
}

const KNOWN_OPTIONS = new Set([1, 2, 3, 6, 7, 8, 9, 10]);

function randomName(random: SeededRandom, server: FuzzServer): NameCase {
  const names = [...server.exports.keys()];
  const roll = random.below(10);
  switch (roll) {
    case 0:
    case 1:
    case 2: {
      const name = random.pick(names);
      return { bytes: Buffer.from(name, "utf8"), status: "exists", label: `existing name of ${Buffer.byteLength(name)} bytes` };
    }
    case 3: {
      // NAME_BYTES_MAX exactly: served by the memory server, which has such an export; unknown to the pool.
      const bytes = Buffer.alloc(NAME_BYTES_MAX, "n");
      return { bytes, status: server.exports.has(bytes.toString()) ? "exists" : "unknown", label: "name of 4096 bytes" };
    }
    case 4:
      return {
        bytes: Buffer.alloc(NAME_BYTES_MAX + 1 + (random.next() < 0.8 ? 0 : random.below(8000)), "n"),
        status: "invalid",
        label: "name over 4096 bytes",
      };
    case 5:
      if (server.busy.size > 0 && random.next() < 0.5)
        return { bytes: Buffer.from([...server.busy][0]!), status: "busy", label: "busy export" };
      if (server.broken.size > 0)
        return { bytes: Buffer.from([...server.broken][0]!), status: "broken", label: "export that cannot be opened" };
      return { bytes: Buffer.from("no-such"), status: "unknown", label: "unknown name" };
    case 6: {
      const bytes = Buffer.from(`missing-${random.below(1000)}`);
      return { bytes, status: "unknown", label: "unknown name" };
    }
    case 7: {
      const bytes = Buffer.from(random.pick(names).slice(0, 40), "utf8");
      bytes[random.below(bytes.length)] = 0;
      return { bytes, status: "invalid", label: "name with NUL" };
    }
    case 8: {
      const bytes = Buffer.from(random.pick(names).slice(0, 40), "utf8");
      // Bytes that are never valid anywhere in UTF-8 (a lone continuation byte could complete a character).
      bytes[random.below(bytes.length)] = random.pick([0xff, 0xc0, 0xc1, 0xf8, 0xfe]);
      return { bytes, status: "invalid", label: "name not UTF-8" };
    }
    default:
      return { bytes: Buffer.alloc(0), status: "unknown", label: "empty name" };
  }
}

/**
 * The document does not order a malformed request against an export that cannot be found
 * (the name may be all that is well formed); for those, either error is a right answer.
 */
function unknownToo(name: NameCase, errors: number[]): number[] {
  return name.status === "unknown" || name.status === "broken" ? [...errors, P.NBD_REP_ERR_UNKNOWN] : errors;
}

function fail(final: number[], label: string, option: number, bytes: Buffer): OptionStep {
  return { label, option, bytes, expect: { kind: "replies", final, before: [] } };
}

const INVALID = [P.NBD_REP_ERR_INVALID];
const UNKNOWN = [P.NBD_REP_ERR_UNKNOWN];
const ACK = [P.NBD_REP_ACK];

function infoOrGo(random: SeededRandom, server: FuzzServer, option: typeof P.NBD_OPT_INFO | typeof P.NBD_OPT_GO): OptionStep {
  const name = randomName(random, server);
  const infoTypes = Array.from({ length: random.below(5) }, () => (random.next() < 0.8 ? random.below(4) : random.below(0x10000)));
  const what = option === P.NBD_OPT_GO ? "GO" : "INFO";
  const malformation = random.below(8);
  if (malformation === 0) {
    const bytes = optionBytes(option, random.bytes(random.below(6)));
    return fail(INVALID, `${what} with under 6 bytes of data`, option, bytes);
  }
  if (malformation === 1) {
    const data = infoRequestData(name.bytes, infoTypes, {
      nameLengthField: random.next() < 0.5 ? 0xffff_ffff : name.bytes.length + 1 + random.below(100),
    });
    return fail(INVALID, `${what} whose name length runs past the data`, option, optionBytes(option, data));
  }
  if (malformation === 2) {
    const lie = random.next() < 0.5 ? 0xffff : infoTypes.length + 1 + random.below(10);
    const data = infoRequestData(name.bytes, infoTypes, { countField: lie });
    return fail(
      unknownToo(name, INVALID),
      `${what} with request count ${lie} for ${infoTypes.length} requests`,
      option,
      optionBytes(option, data),
    );
  }
  if (malformation === 3) {
    const data = infoRequestData(name.bytes, infoTypes, { trailing: random.bytes(1 + random.below(5)) });
    return fail(unknownToo(name, INVALID), `${what} with trailing bytes`, option, optionBytes(option, data));
  }
  const bytes = optionBytes(option, infoRequestData(name.bytes, infoTypes));
  const label = `${what} of ${name.label} with info requests [${infoTypes.join(",")}]`;
  if (name.status === "invalid") return fail(INVALID, label, option, bytes);
  if (name.status === "unknown" || name.status === "broken" || (name.status === "busy" && option === P.NBD_OPT_GO))
    return fail(UNKNOWN, label, option, bytes);
  const exportName = name.bytes.toString("utf8");
  if (option === P.NBD_OPT_GO) return { label, option, bytes, expect: { kind: "go", exportName, infoTypes } };
  // INFO: the same replies as GO but negotiation goes on. A busy export still answers INFO.
  return { label, option, bytes, expect: { kind: "replies", final: ACK, before: [P.NBD_REP_INFO] } };
}

type QueryKind = "allocation" | "wildcard" | "bitmaps" | "bitmap-base" | "nothing" | "invalid";

const QUERIES: readonly [string, QueryKind][] = [
  ["base:allocation", "allocation"],
  ["base:", "wildcard"],
  ["base:other", "nothing"],
  ["qemu:dirty-bitmap:x", "nothing"],
  // The pool server offers a bitmap of every other volume; the memory server none.
  ["qemu:dirty-bitmap:", "bitmaps"],
  ["qemu:", "bitmaps"],
  ["qemu:dirty-bitmap:base", "bitmap-base"],
  ["qemu:allocation-depth", "nothing"],
  ["x:", "nothing"],
  ["allocation", "invalid"],
  [":allocation", "invalid"],
  ["", "invalid"],
];

function metaContext(
  random: SeededRandom,
  server: FuzzServer,
  option: typeof P.NBD_OPT_LIST_META_CONTEXT | typeof P.NBD_OPT_SET_META_CONTEXT,
  state: HaggleState,
): OptionStep {
  const set = option === P.NBD_OPT_SET_META_CONTEXT;
  const what = set ? "SET_META_CONTEXT" : "LIST_META_CONTEXT";
  const name = randomName(random, server);
  const picked = Array.from({ length: random.below(4) }, () => random.pick(QUERIES));
  const queries = picked.map(([text]) => Buffer.from(text));
  const kinds = picked.map(([, kind]) => kind);
  const queryInvalid = kinds.includes("invalid");
  const oddity = random.below(10);
  if (oddity === 0) {
    queries.push(Buffer.alloc(NAME_BYTES_MAX + 1, "q"));
    queries[queries.length - 1]!.write("base:", 0);
  } else if (oddity === 1) {
    queries.push(Buffer.from("base:\u0000allocation"));
  }
  const malformed = oddity <= 1;
  let data: Buffer;
  let label = `${what} of ${name.label} with queries [${picked.map(([text]) => text).join(",")}]${malformed ? " plus a malformed query" : ""}`;
  const lie = random.below(12);
  let lying = true;
  if (lie === 0) {
    data = random.bytes(random.below(4));
    label = `${what} with ${data.length} bytes of data`;
  } else if (lie === 1) {
    data = metaContextData(name.bytes, queries, { countField: 0xffff_ffff });
    label += " and query count 2^32-1";
  } else if (lie === 2) {
    data = metaContextData(name.bytes, queries, { countField: queries.length + 1 });
    label += " and a query count one too high";
  } else if (lie === 3 && queries.length > 0) {
    data = metaContextData(name.bytes, queries, { countField: queries.length - 1 });
    label += " and a query count one too low";
  } else if (lie === 4) {
    data = metaContextData(name.bytes, queries, { trailing: random.bytes(1 + random.below(3)) });
    label += " and trailing bytes";
  } else {
    data = metaContextData(name.bytes, queries);
    lying = false;
  }
  const bytes = optionBytes(option, data);
  if (set && !state.structured) return fail(INVALID, `${label} before STRUCTURED_REPLY`, option, bytes);
  if (lying || malformed || name.status === "invalid") return fail(unknownToo(name, INVALID), label, option, bytes);
  // The document orders nothing between an unknown export and a query without a namespace: either error will do.
  if (name.status === "unknown" || name.status === "broken")
    return fail(queryInvalid ? [...INVALID, ...UNKNOWN] : UNKNOWN, label, option, bytes);
  if (queryInvalid) return fail(INVALID, label, option, bytes);
  const bases = name.status === "exists" ? server.comparisonBases(name.bytes.toString("utf8")) : [];
  const bitmap = (base: string) => `${P.DIRTY_BITMAP_CONTEXT_PREFIX}${base}`;
  const expected = new Set<string>();
  if (set) {
    if (kinds.includes("allocation")) expected.add(P.BASE_ALLOCATION_CONTEXT);
    if (kinds.includes("bitmap-base") && bases.includes("base")) expected.add(bitmap("base"));
  } else {
    if (queries.length === 0 || kinds.includes("allocation") || kinds.includes("wildcard")) expected.add(P.BASE_ALLOCATION_CONTEXT);
    if (queries.length === 0 || kinds.includes("bitmaps")) for (const base of bases) expected.add(bitmap(base));
    if (kinds.includes("bitmap-base") && bases.includes("base")) expected.add(bitmap("base"));
  }
  const check = (replies: { replyType: number; data: Buffer }[]): string | null => {
    const found = replies.filter((reply) => reply.replyType === P.NBD_REP_META_CONTEXT);
    const names = found.map((reply) => reply.data.subarray(4).toString("utf8"));
    if (found.length !== expected.size || names.some((context) => !expected.has(context)))
      return `contexts [${names.join(",")}], expected [${[...expected].join(",")}]`;
    const ids = new Set<number>();
    for (const reply of found) {
      const id = reply.data.readUInt32BE(0);
      if (!set && id !== 0) return "LIST_META_CONTEXT must send context id 0";
      if (set && ids.has(id)) return `context id ${id} given twice`;
      ids.add(id);
    }
    return null;
  };
  return { label, option, bytes, expect: { kind: "replies", final: ACK, before: [P.NBD_REP_META_CONTEXT], check } };
}

function exportName(random: SeededRandom, server: FuzzServer): OptionStep {
  const name = randomName(random, server);
  const bytes = optionBytes(P.NBD_OPT_EXPORT_NAME, name.bytes);
  const label = `EXPORT_NAME of ${name.label}`;
  if (name.status !== "exists") return { label, option: P.NBD_OPT_EXPORT_NAME, bytes, expect: { kind: "close" } };
  return { label, option: P.NBD_OPT_EXPORT_NAME, bytes, expect: { kind: "export-name", exportName: name.bytes.toString("utf8") } };
}

function zeroLength(random: SeededRandom, state: HaggleState): OptionStep {
  const option = random.next() < 0.8 ? 1 + random.below(11) : random.below(0x1_0000_0000);
  const bytes = optionBytes(option, Buffer.alloc(0));
  const label = `option ${option} with no data`;
  switch (option) {
    case P.NBD_OPT_EXPORT_NAME:
      return { label, option, bytes, expect: { kind: "close" } };
    case P.NBD_OPT_ABORT:
      return { label, option, bytes, expect: { kind: "abort" } };
    case P.NBD_OPT_LIST:
      return { label, option, bytes, expect: { kind: "replies", final: ACK, before: [P.NBD_REP_SERVER] } };
    case P.NBD_OPT_STRUCTURED_REPLY:
      state.structured = true;
      return { label, option, bytes, expect: { kind: "replies", final: ACK, before: [] } };
    case P.NBD_OPT_INFO:
    case P.NBD_OPT_GO:
    case P.NBD_OPT_LIST_META_CONTEXT:
    case P.NBD_OPT_SET_META_CONTEXT:
      return fail(INVALID, label, option, bytes);
    default:
      return fail([P.NBD_REP_ERR_UNSUP], label, option, bytes);
  }
}

function unknownOption(random: SeededRandom): OptionStep {
  let option = random.pick([0, 4, 5, 11, 12, 13, 0x7fff_ffff, 0x8000_0000, 0xffff_ffff, random.below(0x1_0000_0000)]);
  if (KNOWN_OPTIONS.has(option)) option = 0;
  const data = random.bytes(random.next() < 0.05 ? OPTION_BYTES_MAX : random.below(65));
  return fail([P.NBD_REP_ERR_UNSUP], `unknown option ${option} with ${data.length} bytes`, option, optionBytes(option, data));
}

/** Exactly OPTION_BYTES_MAX bytes of data: allowed, and refused for what it says. */
function maximumLength(random: SeededRandom): OptionStep {
  const option = random.pick([P.NBD_OPT_LIST, P.NBD_OPT_STRUCTURED_REPLY, P.NBD_OPT_INFO, P.NBD_OPT_GO]);
  const data = random.bytes(OPTION_BYTES_MAX);
  // A name length that runs past the data makes INFO and GO malformed for certain.
  data.writeUInt32BE(0xffff_ffff, 0);
  return fail(INVALID, `option ${option} with ${OPTION_BYTES_MAX} bytes of data`, option, optionBytes(option, data));
}

function hugeLength(random: SeededRandom): OptionStep {
  const declared = random.pick([
    OPTION_BYTES_MAX + 1,
    0x8000_0000,
    0xffff_ffff,
    OPTION_BYTES_MAX + 1 + random.below(0xffff_ffff - OPTION_BYTES_MAX),
  ]);
  const option = 1 + random.below(11);
  const bytes = optionBytes(option, random.bytes(random.below(100)), { declaredBytes: declared });
  return { label: `option ${option} announcing ${declared} bytes of data`, option, bytes, expect: { kind: "close" } };
}

function badMagic(random: SeededRandom): OptionStep {
  const magic = random.pick([P.NBD_OPTS_MAGIC ^ (1n << BigInt(random.below(64))), P.NBD_REP_MAGIC, P.NBD_INIT_MAGIC, 0n]);
  const option = 1 + random.below(11);
  return {
    label: `option with magic 0x${magic.toString(16)}`,
    option,
    bytes: optionBytes(option, Buffer.alloc(0), { magic }),
    expect: { kind: "close" },
  };
}

type OptionKind =
  | "structured"
  | "list"
  | "info"
  | "go"
  | "list-meta"
  | "set-meta"
  | "export-name"
  | "abort"
  | "unknown"
  | "zero-length"
  | "maximum-length"
  | "huge-length"
  | "bad-magic";
const OPTION_WEIGHTS: readonly [OptionKind, number][] = [
  ["structured", 10],
  ["list", 6],
  ["info", 14],
  ["go", 7],
  ["list-meta", 12],
  ["set-meta", 12],
  ["export-name", 3],
  ["abort", 2],
  ["unknown", 8],
  ["zero-length", 8],
  ["maximum-length", 1],
  ["huge-length", 3],
  ["bad-magic", 3],
];
const OPTION_WEIGHT_TOTAL = OPTION_WEIGHTS.reduce((sum, [, weight]) => sum + weight, 0);

export function generateOption(random: SeededRandom, server: FuzzServer, state: HaggleState): OptionStep {
  const kind = pickWeighted(random, OPTION_WEIGHTS, OPTION_WEIGHT_TOTAL);
  return { ...optionOfKind(kind, random, server, state), kind: `option: ${kind}` };
}

function optionOfKind(kind: OptionKind, random: SeededRandom, server: FuzzServer, state: HaggleState): OptionStep {
  switch (kind) {
    case "structured": {
      if (random.next() < 0.8) {
        state.structured = true;
        return {
          label: "STRUCTURED_REPLY",
          option: P.NBD_OPT_STRUCTURED_REPLY,
          bytes: optionBytes(P.NBD_OPT_STRUCTURED_REPLY, Buffer.alloc(0)),
          expect: { kind: "replies", final: ACK, before: [] },
        };
      }
      return fail(
        INVALID,
        "STRUCTURED_REPLY with data",
        P.NBD_OPT_STRUCTURED_REPLY,
        optionBytes(P.NBD_OPT_STRUCTURED_REPLY, random.bytes(1 + random.below(16))),
      );
    }
    case "list":
      if (random.next() < 0.8)
        return {
          label: "LIST",
          option: P.NBD_OPT_LIST,
          bytes: optionBytes(P.NBD_OPT_LIST, Buffer.alloc(0)),
          expect: { kind: "replies", final: ACK, before: [P.NBD_REP_SERVER] },
        };
      return fail(INVALID, "LIST with data", P.NBD_OPT_LIST, optionBytes(P.NBD_OPT_LIST, random.bytes(1 + random.below(16))));
    case "info":
      return infoOrGo(random, server, P.NBD_OPT_INFO);
    case "go":
      return infoOrGo(random, server, P.NBD_OPT_GO);
    case "list-meta":
      return metaContext(random, server, P.NBD_OPT_LIST_META_CONTEXT, state);
    case "set-meta":
      return metaContext(random, server, P.NBD_OPT_SET_META_CONTEXT, state);
    case "export-name":
      return exportName(random, server);
    case "abort":
      return {
        label: "ABORT",
        option: P.NBD_OPT_ABORT,
        bytes: optionBytes(P.NBD_OPT_ABORT, random.bytes(random.next() < 0.7 ? 0 : random.below(32))),
        expect: { kind: "abort" },
      };
    case "unknown":
      return unknownOption(random);
    case "zero-length":
      return zeroLength(random, state);
    case "maximum-length":
      return maximumLength(random);
    case "huge-length":
      return hugeLength(random);
    case "bad-magic":
      return badMagic(random);
  }
}

export function endsHaggling(step: OptionStep): boolean {
  return step.expect.kind !== "replies";
}
