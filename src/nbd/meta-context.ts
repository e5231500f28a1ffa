// Metadata context queries. We serve one context, base:allocation; the spec fixes how
// queries in the base: namespace behave and tells us to ignore namespaces we do not know.

import { BASE_ALLOCATION_CONTEXT } from "./protocol.js";

export type QueryMatch = { ok: true; contexts: string[] } | { ok: false; reason: string };

function splitQuery(query: string): { namespace: string; leaf: string } | null {
  const colon = query.indexOf(":");
  if (colon <= 0) return null;
  return { namespace: query.slice(0, colon), leaf: query.slice(colon + 1) };
}

function match(queries: readonly string[], wildcardAllowed: boolean): QueryMatch {
  const contexts = new Set<string>();
  for (const query of queries) {
    const parts = splitQuery(query);
    if (parts === null) return { ok: false, reason: `query '${query}' does not start with a namespace and a colon` };
    if (parts.namespace !== "base") continue;
    // "base:" lists every base context but selects none; unknown base leaves are ignored.
    if (parts.leaf === "allocation" || (parts.leaf === "" && wildcardAllowed)) contexts.add(BASE_ALLOCATION_CONTEXT);
  }
  return { ok: true, contexts: [...contexts] };
}

/** Contexts NBD_OPT_LIST_META_CONTEXT reports: all of them when no query is given. */
export function contextsToList(queries: readonly string[]): QueryMatch {
  if (queries.length === 0) return { ok: true, contexts: [BASE_ALLOCATION_CONTEXT] };
  return match(queries, true);
}

/** Contexts NBD_OPT_SET_META_CONTEXT selects: none when no query is given. */
export function contextsToSelect(queries: readonly string[]): QueryMatch {
  return match(queries, false);
}
