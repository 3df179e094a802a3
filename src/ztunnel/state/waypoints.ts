import type { GatewayAddress, Service, StateData, WaypointRoute, Workload } from "./types.js";
import { serviceKey } from "./types.js";

// Waypoints resolved once per state (DESIGN §13): a workload's or service's `waypoint` (an
// address or a service hostname) becomes the HBONE address and the identity to expect there.
// An address is a waypoint workload's IP, or a waypoint service's VIP; a service resolves to
// one of its healthy endpoints. A waypoint that resolves to nothing leaves no route, and the
// routing checks (routing.ts) then fail the destination closed: it is never bypassed.

export function withWaypointRoutes(data: StateData): StateData {
  if (!data.workloads.some((w) => w.waypoint !== undefined) && !data.services.some((s) => s.waypoint !== undefined)) return data;
  const byIp = new Map<string, Workload>();
  for (const w of data.workloads) for (const ip of w.workloadIps) byIp.set(`${w.network}/${ip}`, w);
  const byVip = new Map<string, Service>();
  const byHost = new Map<string, Service>();
  for (const s of data.services) {
    for (const v of s.vips) byVip.set(`${v.network}/${v.address}`, s);
    byHost.set(serviceKey(s.namespace, s.hostname), s);
  }
  const members = new Map<string, Workload[]>();
  for (const w of [...data.workloads].sort((a, b) => (a.uid < b.uid ? -1 : 1))) {
    for (const key of Object.keys(w.services)) members.set(key, [...(members.get(key) ?? []), w]);
  }
  const endpointOf = (s: Service): Workload | undefined =>
    (members.get(serviceKey(s.namespace, s.hostname)) ?? []).find((w) => w.status === "Healthy" && w.workloadIps.length > 0);
  const resolve = (g: GatewayAddress): WaypointRoute | undefined => {
    const d = g.destination;
    let w: Workload | undefined;
    if ("address" in d) {
      const key = `${d.address.network}/${d.address.address}`;
      w = byIp.get(key);
      if (w === undefined) {
        const s = byVip.get(key);
        w = s === undefined ? undefined : endpointOf(s);
      }
    } else {
      const s = byHost.get(serviceKey(d.hostname.namespace, d.hostname.hostname));
      w = s === undefined ? undefined : endpointOf(s);
    }
    const ip = "address" in d && w !== undefined && byIp.get(`${d.address.network}/${d.address.address}`) === w ? d.address.address : w?.workloadIps[0];
    if (w === undefined || ip === undefined) return undefined;
    return { ip, port: g.hboneMtlsPort, identity: { trustDomain: w.trustDomain, namespace: w.namespace, serviceAccount: w.serviceAccount } };
  };
  const route = <T extends { readonly waypoint?: GatewayAddress | undefined; readonly waypointRoute?: WaypointRoute | undefined }>(o: T): T => {
    if (o.waypoint === undefined) return o.waypointRoute === undefined ? o : { ...o, waypointRoute: undefined };
    return { ...o, waypointRoute: resolve(o.waypoint) };
  };
  return { ...data, workloads: data.workloads.map(route), services: data.services.map(route) };
}
