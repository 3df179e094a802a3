import { cidr } from "../authz/validate.js";
import type { AuthzMatch, AuthzPolicy, ServiceAccountMatch, StringMatch } from "../authz/types.js";
import { errorMessage } from "../../shared/errors.js";
import { arr, ipFromBytes, num, obj, str, type Obj } from "./decode-util.js";
import { ResourceError } from "./errors.js";

// istio.security.Authorization → the one policy model (DESIGN §13/§14): rules OR, clauses AND,
// matches OR. Checked here, per resource, so one bad policy is NACKed alone.

const SCOPES = { GLOBAL: "Global", NAMESPACE: "Namespace", WORKLOAD_SELECTOR: "WorkloadSelector" } as const;
const ACTIONS = { ALLOW: "Allow", DENY: "Deny" } as const;

export function mapAuthorization(name: string, a: Obj): AuthzPolicy {
  const namespace = str(a, "namespace");
  const policyName = str(a, "name");
  if (policyName === "") throw new ResourceError(name, "policy has no name");
  // Global policies live in the root namespace; the resource name is still namespace/name.
  if (name !== `${namespace}/${policyName}`) throw new ResourceError(name, `policy ${namespace}/${policyName} differs from its resource name`);
  const scope = SCOPES[(str(a, "scope") || "GLOBAL") as keyof typeof SCOPES];
  if (scope === undefined) throw new ResourceError(name, `scope ${str(a, "scope")} is not known`);
  const action = ACTIONS[(str(a, "action") || "ALLOW") as keyof typeof ACTIONS];
  if (action === undefined) throw new ResourceError(name, `action ${str(a, "action")} is not known (fail closed)`);
  const rules = arr(a, "rules").map((r, i) =>
    arr(obj(r, name, `rules[${i}]`), "clauses").map((c, j) =>
      arr(obj(c, name, `rules[${i}].clauses[${j}]`), "matches").map((m, k) => match(obj(m, name, `rules[${i}].clauses[${j}].matches[${k}]`), name, `rules[${i}].clauses[${j}].matches[${k}]`)),
    ),
  );
  return { name: policyName, namespace, scope, action, rules, dryRun: a.dry_run === true };
}

function match(m: Obj, resource: string, at: string): AuthzMatch {
  const out: Record<string, unknown> = {};
  const fields = (pairs: readonly (readonly [string, keyof AuthzMatch])[], each: (x: unknown, at: string) => unknown): void => {
    for (const [wire, key] of pairs) {
      const list = arr(m, wire);
      if (list.length > 0) out[key] = list.map((x, i) => each(x, `${at}.${wire}[${i}]`));
    }
  };
  fields(
    [
      ["namespaces", "namespaces"],
      ["not_namespaces", "notNamespaces"],
      ["principals", "principals"],
      ["not_principals", "notPrincipals"],
    ],
    (s, where) => stringMatch(obj(s, resource, where), resource, where),
  );
  fields(
    [
      ["service_accounts", "serviceAccounts"],
      ["not_service_accounts", "notServiceAccounts"],
    ],
    (s, where): ServiceAccountMatch => {
      const o = obj(s, resource, where);
      const namespace = str(o, "namespace");
      const serviceAccount = str(o, "serviceAccount");
      if (namespace === "" || serviceAccount === "") throw new ResourceError(resource, `${where} needs a namespace and a service account`);
      return { namespace, serviceAccount };
    },
  );
  fields(
    [
      ["source_ips", "sourceIps"],
      ["not_source_ips", "notSourceIps"],
      ["destination_ips", "destinationIps"],
      ["not_destination_ips", "notDestinationIps"],
    ],
    (x, where) => {
      const o = obj(x, resource, where);
      const ip = ipFromBytes(o.address, resource, `${where}.address`);
      const bits = ip.includes(":") ? 128 : 32;
      const len = o.length === undefined ? bits : num(o, "length");
      if (!Number.isInteger(len) || len < 0 || len > bits) throw new ResourceError(resource, `${where}.length ${len} is not a prefix length`);
      try {
        return cidr(`${ip}/${len}`, where);
      } catch (err) {
        throw new ResourceError(resource, errorMessage(err));
      }
    },
  );
  fields(
    [
      ["destination_ports", "destinationPorts"],
      ["not_destination_ports", "notDestinationPorts"],
    ],
    (p, where) => {
      if (typeof p !== "number" || !Number.isInteger(p) || p < 1 || p > 65535) throw new ResourceError(resource, `${where} ${String(p)} is not a port`);
      return p;
    },
  );
  return out as AuthzMatch;
}

function stringMatch(s: Obj, resource: string, at: string): StringMatch {
  if (typeof s.exact === "string") return { kind: "exact", value: s.exact };
  // An empty prefix or suffix would match every identity, even none: refused, as the file's are.
  if (typeof s.prefix === "string") return s.prefix === "" ? refuse(resource, `${at}.prefix is empty`) : { kind: "prefix", value: s.prefix };
  if (typeof s.suffix === "string") return s.suffix === "" ? refuse(resource, `${at}.suffix is empty`) : { kind: "suffix", value: s.suffix };
  if (s.presence !== undefined && s.presence !== null) return { kind: "presence", value: "" };
  // An empty StringMatch would match nothing in Istio's ztunnel; refusing is clearer.
  throw new ResourceError(resource, `${at} has no match type`);
}

function refuse(resource: string, why: string): never {
  throw new ResourceError(resource, why);
}
