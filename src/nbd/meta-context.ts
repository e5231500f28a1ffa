// Metadata context queries. We serve base:allocation, and, where the catalog can compare an
// export with other volumes, one qemu:dirty-bitmap:NAME context per such volume NAME. The
// spec fixes how queries in the base: namespace behave and tells us to ignore namespaces we
// do not know; QEMU's interop document (docs/interop/nbd.rst) defines the qemu: namespace,
// and its wildcards are answered as qemu-nbd answers them: `qemu:` and `qemu:dirty-bitmap:`
// list every bitmap, and select nothing.

import type { ChangeTracker } from "./catalog.js";
import { LISTED_DIRTY_BITMAPS_MAX } from "./limits.js";
import { BASE_ALLOCATION_CONTEXT, DIRTY_BITMAP_CONTEXT_PREFIX } from "./protocol.js";

export type QueryMatch = { ok: true; contexts: string[] } | { ok: false; reason: string };

/** A context a client selected, under the id its BLOCK_STATUS chunks carry. */
export type SelectedContext =
  { id: number; name: string; kind: "allocation" } | { id: number; name: string; kind: "dirty-bitmap"; tracker: ChangeTracker };

/** What SET_META_CONTEXT asked for, before the catalog says which bitmaps exist. */
export type RequestedContext = { kind: "allocation" } | { kind: "dirty-bitmap"; baseName: string };

export type SelectQuery = { ok: true; requested: RequestedContext[] } | { ok: false; reason: string };

export function dirtyBitmapContext(baseName: string): string {
  return `${DIRTY_BITMAP_CONTEXT_PREFIX}${baseName}`;
}

function splitQuery(query: string): { namespace: string; leaf: string } | null {
  const colon = query.indexOf(":");
  if (colon <= 0) return null;
  return { namespace: query.slice(0, colon), leaf: query.slice(colon + 1) };
}

function invalidQuery(query: string): string {
  return `query '${query}' does not start with a namespace and a colon`;
}

/**
 * Every bitmap context, or past LISTED_DIRTY_BITMAPS_MAX of them the namespace wildcard alone:
 * the spec lets a list answer with records from which a client that knows the namespace can
 * name any context, and this keeps one answer small in a pool of many volumes.
 */
function allBitmaps(baseNames: readonly string[]): string[] {
  if (baseNames.length > LISTED_DIRTY_BITMAPS_MAX) return [DIRTY_BITMAP_CONTEXT_PREFIX];
  return baseNames.map(dirtyBitmapContext);
}

/**
 * Contexts NBD_OPT_LIST_META_CONTEXT reports for an export that can be compared with
 * `baseNames`: all of them when no query is given, else those the queries match, in our
 * order (base:allocation, then the bitmaps in the catalog's order), each once.
 */
export function contextsToList(queries: readonly string[], baseNames: readonly string[]): QueryMatch {
  if (queries.length === 0) return { ok: true, contexts: [BASE_ALLOCATION_CONTEXT, ...allBitmaps(baseNames)] };
  let allocation = false;
  let everyBitmap = false;
  const named = new Set<string>();
  for (const query of queries) {
    const parts = splitQuery(query);
    if (parts === null) return { ok: false, reason: invalidQuery(query) };
    if (parts.namespace === "base") {
      // "base:" lists every base context; unknown base leaves are ignored.
      if (parts.leaf === "allocation" || parts.leaf === "") allocation = true;
    } else if (query === "qemu:" || query === DIRTY_BITMAP_CONTEXT_PREFIX) {
      everyBitmap = true;
    } else if (query.startsWith(DIRTY_BITMAP_CONTEXT_PREFIX)) {
      named.add(query.slice(DIRTY_BITMAP_CONTEXT_PREFIX.length));
    }
    // Other qemu: leaves (qemu:allocation-depth) and other namespaces: nothing we serve.
  }
  const bitmaps = everyBitmap ? allBitmaps(baseNames) : baseNames.filter((name) => named.has(name)).map(dirtyBitmapContext);
  return { ok: true, contexts: [...(allocation ? [BASE_ALLOCATION_CONTEXT] : []), ...bitmaps] };
}

/**
 * What NBD_OPT_SET_META_CONTEXT asks to select, each context once, in query order: none for
 * no query, and none for a wildcard (the spec says a wildcard should select nothing). Whether
 * a named bitmap exists is the catalog's to say.
 */
export function contextsToSelect(queries: readonly string[]): SelectQuery {
  const requested: RequestedContext[] = [];
  const seen = new Set<string>();
  for (const query of queries) {
    const parts = splitQuery(query);
    if (parts === null) return { ok: false, reason: invalidQuery(query) };
    if (seen.has(query)) continue;
    if (query === BASE_ALLOCATION_CONTEXT) {
      seen.add(query);
      requested.push({ kind: "allocation" });
    } else if (query.startsWith(DIRTY_BITMAP_CONTEXT_PREFIX) && query.length > DIRTY_BITMAP_CONTEXT_PREFIX.length) {
      seen.add(query);
      requested.push({ kind: "dirty-bitmap", baseName: query.slice(DIRTY_BITMAP_CONTEXT_PREFIX.length) });
    }
  }
  return { ok: true, requested };
}
