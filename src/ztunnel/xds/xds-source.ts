import { errorMessage } from "../../shared/errors.js";
import type { Logger } from "../../shared/log.js";
import type { AuthzPolicy } from "../authz/types.js";
import type { StateSource } from "../state/source.js";
import type { StateSink } from "../state/store.js";
import type { ConfigNotice, Service, StateData, Workload } from "../state/types.js";
import type { DeltaHandler, DeltaResponse, Rejection } from "./delta-client.js";
import { ResourceError } from "./errors.js";
import { mapAddress, type MappedAddress } from "./map-address.js";
import { mapAuthorization } from "./map-authorization.js";
import { ADDRESS_TYPE_URL, AUTHORIZATION_TYPE_URL, decodeAs, xdsTypes } from "./proto.js";

// The xDS resources we hold, by type and name, and the state they make. A response is applied
// resource by resource: a resource we refuse keeps its previous version (or stays absent) and
// is named in the NACK; the rest of the response takes effect. Removals drop the named
// resources. Everything is kept across disconnects; the store gets a whole new state after
// every response.

interface Held<T> {
  readonly version: string;
  readonly value: T;
  readonly ignored: readonly string[];
}

export interface XdsResourceReport {
  /** Resource name → fields present that we do not act on. */
  readonly ignored: Readonly<Record<string, readonly string[]>>;
  /** Resources refused by the last NACK of each type. */
  readonly rejected: Readonly<Record<string, readonly Rejection[]>>;
}

export class XdsResources implements DeltaHandler {
  // Replaced whole after each accepted response (the next maps are built from copies).
  private addresses = new Map<string, Held<MappedAddress>>();
  private policies = new Map<string, Held<AuthzPolicy>>();
  private readonly rejected = new Map<string, readonly Rejection[]>();

  constructor(
    private readonly sink: StateSink,
    private readonly origin: string,
    private readonly log: Logger,
  ) {}

  versions(typeUrl: string): Record<string, string> {
    const out: Record<string, string> = {};
    // Authorization resources carry no version; istiod resends them all anyway.
    if (typeUrl === ADDRESS_TYPE_URL) for (const [name, h] of this.addresses) if (h.version !== "") out[name] = h.version;
    return out;
  }

  apply(r: DeltaResponse): readonly Rejection[] {
    const rejections: Rejection[] = [];
    const isAddress = r.typeUrl === ADDRESS_TYPE_URL;
    const nextAddresses = new Map(this.addresses);
    const nextPolicies = new Map(this.policies);
    for (const name of r.removed) {
      if (isAddress) nextAddresses.delete(name);
      else nextPolicies.delete(name);
    }
    const types = xdsTypes();
    for (const res of r.resources) {
      try {
        if (res.name === "") throw new ResourceError("(unnamed)", "resource has no name");
        if (res.typeUrl !== r.typeUrl || res.value === undefined) throw new ResourceError(res.name, `payload type ${res.typeUrl ?? "(none)"} is not ${r.typeUrl}`);
        let decoded: Record<string, unknown>;
        try {
          decoded = decodeAs(isAddress ? types.address : types.authorization, res.value);
        } catch (err) {
          throw new ResourceError(res.name, `undecodable: ${errorMessage(err)}`);
        }
        if (isAddress) {
          const mapped = mapAddress(res.name, decoded);
          nextAddresses.set(res.name, { version: res.version, value: mapped, ignored: mapped.ignored });
        } else {
          nextPolicies.set(res.name, { version: res.version, value: mapAuthorization(res.name, decoded), ignored: [] });
        }
      } catch (err) {
        rejections.push({ name: err instanceof ResourceError ? err.resource : res.name || "(unnamed)", reason: err instanceof ResourceError ? err.reason : errorMessage(err) });
      }
    }
    const data = buildState(nextAddresses, nextPolicies);
    // The store validates the policy set again; a refusal there refuses the whole response.
    this.sink.replace(data, this.origin);
    this.addresses = nextAddresses;
    this.policies = nextPolicies;
    this.rejected.set(r.typeUrl, rejections);
    this.log.debug({ type: r.typeUrl, applied: r.resources.length - rejections.length, removed: r.removed.length, rejected: rejections.length }, "xDS response applied");
    return rejections;
  }

  report(): XdsResourceReport {
    const ignored: Record<string, readonly string[]> = {};
    for (const [name, h] of this.addresses) if (h.ignored.length > 0) ignored[name] = h.ignored;
    return { ignored, rejected: Object.fromEntries(this.rejected) };
  }
}

function buildState(addresses: ReadonlyMap<string, Held<MappedAddress>>, policies: ReadonlyMap<string, Held<AuthzPolicy>>): StateData {
  const workloads: Workload[] = [];
  const services: Service[] = [];
  const notices: ConfigNotice[] = [];
  for (const h of addresses.values()) {
    const object = h.value.kind === "workload" ? `workload ${h.value.workload.namespace}/${h.value.workload.name}` : `service ${h.value.service.namespace}/${h.value.service.hostname}`;
    if (h.value.kind === "workload") workloads.push(h.value.workload);
    else services.push(h.value.service);
    for (const field of h.ignored) notices.push({ object, field, effect: "not-enforced", reason: "sent by istiod; this ztunnel does not act on it" });
  }
  return { workloads, services, policies: [...policies.values()].map((h) => h.value), notices };
}

/** A StateSource over the delta client: start() returns at once (readiness waits for the sync). */
export class XdsStateSource implements StateSource {
  readonly name: string;

  constructor(
    name: string,
    private readonly begin: (sink: StateSink) => void,
    private readonly end: () => void,
  ) {
    this.name = name;
  }

  async start(sink: StateSink): Promise<void> {
    this.begin(sink);
  }

  async close(): Promise<void> {
    this.end();
  }
}

export { ADDRESS_TYPE_URL, AUTHORIZATION_TYPE_URL };
