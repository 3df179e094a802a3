import { AmbientError } from "../../shared/errors.js";

// A workload identity: the SPIFFE URI `spiffe://<trust domain>/ns/<namespace>/sa/<account>`
// that Istio puts in the URI SAN of every workload certificate.

export interface Identity {
  readonly trustDomain: string;
  readonly namespace: string;
  readonly serviceAccount: string;
}

export class IdentityError extends AmbientError {
  constructor(message: string) {
    super("IDENTITY_INVALID", message);
  }
}

const SEGMENT = /^[A-Za-z0-9._-]+$/;
const TRUST_DOMAIN = /^[a-z0-9._-]+$/;

export function makeIdentity(trustDomain: string, namespace: string, serviceAccount: string): Identity {
  if (!TRUST_DOMAIN.test(trustDomain)) throw new IdentityError(`trust domain "${trustDomain}" is not valid`);
  if (!SEGMENT.test(namespace)) throw new IdentityError(`namespace "${namespace}" is not valid`);
  if (!SEGMENT.test(serviceAccount)) throw new IdentityError(`service account "${serviceAccount}" is not valid`);
  return Object.freeze({ trustDomain, namespace, serviceAccount });
}

export function formatIdentity(id: Identity): string {
  return `spiffe://${id.trustDomain}/ns/${id.namespace}/sa/${id.serviceAccount}`;
}

const formatted = new WeakMap<Identity, string>();

/**
 * formatIdentity, worked out once per identity object. The hot paths (pool keys, metric labels)
 * see the same few objects for every connection: one per workload per state, one per HBONE peer.
 */
export function identityUri(id: Identity): string {
  let uri = formatted.get(id);
  if (uri === undefined) {
    uri = formatIdentity(id);
    formatted.set(id, uri);
  }
  return uri;
}

export function parseIdentity(uri: string): Identity {
  const m = /^spiffe:\/\/([^/]+)\/ns\/([^/]+)\/sa\/([^/]+)$/.exec(uri);
  if (m === null) {
    throw new IdentityError(`"${uri}" is not a SPIFFE workload identity (spiffe://<td>/ns/<ns>/sa/<sa>)`);
  }
  return makeIdentity(m[1] ?? "", m[2] ?? "", m[3] ?? "");
}

/** Parses without throwing; undefined for anything that is not a workload identity. */
export function tryParseIdentity(uri: string): Identity | undefined {
  try {
    return parseIdentity(uri);
  } catch {
    return undefined;
  }
}

export function identityEquals(a: Identity, b: Identity): boolean {
  return a.trustDomain === b.trustDomain && a.namespace === b.namespace && a.serviceAccount === b.serviceAccount;
}
