import { AmbientError } from "../shared/errors.js";

// Enablement selectors: which pods the ambient mesh takes, as Kubernetes label selectors over
// the pod's and its namespace's labels. One definition, one parser and one default for both
// sides, so the plugin and the agent can never disagree about a pod.

export interface LabelRequirement {
  key: string;
  operator: "In" | "NotIn" | "Exists" | "DoesNotExist";
  values: string[];
}

export interface LabelSelector {
  matchLabels?: Record<string, string>;
  matchExpressions?: LabelRequirement[];
}

/** An entry matches when every selector it names matches; an entry naming none matches nothing. */
export interface EnablementSelector {
  podSelector?: LabelSelector;
  namespaceSelector?: LabelSelector;
}

/** Istio's default: pod label istio.io/dataplane-mode=ambient, or the namespace label unless the pod opts out with =none. */
export const DEFAULT_SELECTORS: readonly EnablementSelector[] = Object.freeze([
  { podSelector: { matchLabels: { "istio.io/dataplane-mode": "ambient" } } },
  {
    podSelector: { matchExpressions: [{ key: "istio.io/dataplane-mode", operator: "NotIn", values: ["none"] }] },
    namespaceSelector: { matchLabels: { "istio.io/dataplane-mode": "ambient" } },
  },
]);

/** A selector list that does not have the expected shape; the message says where. */
export class SelectorError extends AmbientError {
  constructor(message: string) {
    super("ENABLEMENT_SELECTORS", message);
  }
}

/** Kubernetes label-selector semantics (an empty selector matches everything). */
export function selectorMatches(sel: LabelSelector, labels: Record<string, string>): boolean {
  for (const [k, v] of Object.entries(sel.matchLabels ?? {})) {
    if (labels[k] !== v) return false;
  }
  for (const req of sel.matchExpressions ?? []) {
    const has = Object.prototype.hasOwnProperty.call(labels, req.key);
    const value = labels[req.key];
    switch (req.operator) {
      case "In":
        if (!has || !req.values.includes(value ?? "")) return false;
        break;
      case "NotIn":
        if (has && req.values.includes(value ?? "")) return false;
        break;
      case "Exists":
        if (!has) return false;
        break;
      case "DoesNotExist":
        if (has) return false;
        break;
    }
  }
  return true;
}

type Json = Record<string, unknown>;

function isObject(v: unknown): v is Json {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function labelSelector(v: unknown, where: string): LabelSelector | undefined {
  if (v === undefined || v === null) return undefined;
  if (!isObject(v)) throw new SelectorError(`${where} must be an object`);
  const sel: LabelSelector = {};
  if (v.matchLabels !== undefined && v.matchLabels !== null) {
    if (!isObject(v.matchLabels) || !Object.values(v.matchLabels).every((x) => typeof x === "string")) {
      throw new SelectorError(`${where}.matchLabels must map strings to strings`);
    }
    sel.matchLabels = { ...(v.matchLabels as Record<string, string>) };
  }
  if (v.matchExpressions !== undefined && v.matchExpressions !== null) {
    if (!Array.isArray(v.matchExpressions)) throw new SelectorError(`${where}.matchExpressions must be a list`);
    sel.matchExpressions = v.matchExpressions.map((e: unknown, i) => {
      const at = `${where}.matchExpressions[${i}]`;
      if (!isObject(e) || typeof e.key !== "string") throw new SelectorError(`${at} needs a string "key"`);
      const op = e.operator;
      if (op !== "In" && op !== "NotIn" && op !== "Exists" && op !== "DoesNotExist") {
        throw new SelectorError(`${at}.operator must be In, NotIn, Exists or DoesNotExist`);
      }
      const values = e.values ?? [];
      if (!Array.isArray(values) || !values.every((x) => typeof x === "string")) throw new SelectorError(`${at}.values must be strings`);
      if ((op === "In" || op === "NotIn") && values.length === 0) throw new SelectorError(`${at}: ${op} needs values`);
      return { key: e.key, operator: op, values: [...(values as string[])] };
    });
  }
  return sel;
}

/**
 * Validates a selector list as the plugin config's `enablement_selectors` and the agent's
 * AMBIENT_ENABLEMENT_SELECTORS carry it; undefined/null = the defaults.
 */
export function parseEnablementSelectors(v: unknown, where = "enablement_selectors"): EnablementSelector[] {
  if (v === undefined || v === null) return DEFAULT_SELECTORS.map((s) => structuredClone(s));
  if (!Array.isArray(v)) throw new SelectorError(`${where} must be a list`);
  return v.map((s: unknown, i) => {
    if (!isObject(s)) throw new SelectorError(`${where}[${i}] must be an object`);
    const out: EnablementSelector = {};
    const pod = labelSelector(s.podSelector, `${where}[${i}].podSelector`);
    const ns = labelSelector(s.namespaceSelector, `${where}[${i}].namespaceSelector`);
    if (pod) out.podSelector = pod;
    if (ns) out.namespaceSelector = ns;
    return out;
  });
}
