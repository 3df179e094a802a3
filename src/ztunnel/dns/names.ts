// Name arithmetic of the DNS proxy: lower-case dotted names without the trailing dot ("" is the
// root). Aliases follow ztunnel's expansion of a requested name from the client pod's point of
// view: the name itself, its Kubernetes FQDN forms, and the same again after stripping each of
// the pod's search domains (what its resolver appended).

export function normalizeName(name: string): string {
  const lower = name.toLowerCase();
  return lower.endsWith(".") ? lower.slice(0, -1) : lower;
}

export function labels(name: string): string[] {
  return name === "" ? [] : name.split(".");
}

/** `name` minus `.domain`, or undefined when it does not end with it (or is the domain). */
export function trimDomain(name: string, domain: string): string | undefined {
  if (!name.endsWith(`.${domain}`)) return undefined;
  const rest = name.slice(0, name.length - domain.length - 1);
  return rest === "" ? undefined : rest;
}

/** The name, then wildcards of decreasing specificity: a.b.c → a.b.c, *.b.c, *.c. */
export function wildcards(name: string): string[] {
  const out = [name];
  let parts = labels(name);
  while (parts.length > 1) {
    out.push(`*.${parts.slice(1).join(".")}`);
    parts = parts.slice(1);
  }
  return out;
}

/** The pod's resolver search list, as kubelet writes it: `<ns>.svc.<domain> svc.<domain> <domain>`. */
export function searchDomains(namespace: string, clusterDomain: string): string[] {
  return [`${namespace}.svc.${clusterDomain}`, `svc.${clusterDomain}`, clusterDomain];
}

export interface Alias {
  /** A candidate FQDN to look up. */
  readonly name: string;
  /** The requested name with a search domain stripped, when this alias came from one. */
  readonly stripped: string | undefined;
  /** The candidate may be `<pod hostname>.<headless service host>`. */
  readonly podHost: boolean;
}

/**
 * Kubernetes FQDN forms a partial name may stand for (ztunnel's to_kube_fqdns):
 * `svc` → `svc.<ns>.svc.<d>`; `a.b` → `a.b.svc.<d>` or pod `a.b.<ns>.svc.<d>`;
 * `a.b.svc` → `a.b.svc.<d>`; `a.b.c` → pod `a.b.c.svc.<d>`; `a.b.c.svc` → pod `a.b.c.svc.<d>`.
 */
export function kubeFqdns(name: string, namespace: string, clusterDomain: string): { name: string; podHost: boolean }[] {
  const parts = labels(name);
  const svcDomain = `svc.${clusterDomain}`;
  const nsDomain = `${namespace}.${svcDomain}`;
  switch (parts.length) {
    case 1:
      return [{ name: `${name}.${nsDomain}`, podHost: false }];
    case 2:
      return [
        { name: `${name}.${svcDomain}`, podHost: false },
        { name: `${name}.${nsDomain}`, podHost: true },
      ];
    case 3: {
      const out = parts[2] === "svc" ? [{ name: `${name}.${clusterDomain}`, podHost: false }] : [];
      out.push({ name: `${name}.${svcDomain}`, podHost: true });
      return out;
    }
    case 4:
      return parts[3] === "svc" ? [{ name: `${name}.${clusterDomain}`, podHost: true }] : [];
    default:
      return [];
  }
}

/** Every candidate for `name` asked by a pod in `namespace`, most specific first, no repeats. */
export function aliases(name: string, namespace: string, clusterDomain: string): Alias[] {
  const out: Alias[] = [];
  const seen = new Set<string>();
  const add = (a: Alias): void => {
    if (seen.has(a.name)) return;
    seen.add(a.name);
    out.push(a);
  };
  // A full pod FQDN: <hostname>.<service>.<ns>.svc.<cluster>.<local>
  const podHost = labels(name).length === labels(clusterDomain).length + 4;
  add({ name, stripped: undefined, podHost });
  for (const k of kubeFqdns(name, namespace, clusterDomain)) add({ name: k.name, stripped: undefined, podHost: k.podHost });
  for (const search of searchDomains(namespace, clusterDomain)) {
    const stripped = trimDomain(name, search);
    if (stripped === undefined) continue;
    add({ name: stripped, stripped, podHost });
    for (const k of kubeFqdns(stripped, namespace, clusterDomain)) add({ name: k.name, stripped, podHost: k.podHost });
  }
  return out;
}

/** The label Kubernetes DNS gives an endpoint without a hostname: its IP, dashed. */
export function dashedIp(ip: string): string {
  return ip.replace(/[.:]/g, "-");
}
