import { createServer, type Server, type Socket } from "node:net";
import { Writable } from "node:stream";
import { CoreV1Api, PortForward, type KubeConfig, type V1Pod } from "@kubernetes/client-node";
import { errorMessage } from "../shared/errors.js";
import type { NodeTarget } from "./context.js";
import { CommandFailedError, UnreachableError } from "./errors.js";

// From a workstation: the ztunnel (and agent) pod of each node, found through the API server,
// reached as istioctl does, through the pods/portforward subresource. Each admin port gets a
// local listener on 127.0.0.1; every TCP connection to it is one port-forward stream, so the
// commands talk HTTP to 127.0.0.1 exactly as on the node itself.

export const ZTUNNEL_SELECTOR = "app=ztunnel";
export const AGENT_SELECTOR = "k8s-app=istio-cni-node";
const ZTUNNEL_PORTS = { admin: 15000, readiness: 15021, stats: 15020 } as const;
const AGENT_DEFAULT_PORT = 8000;

export interface KubeTargets {
  nodes: NodeTarget[];
  close(): Promise<void>;
}

async function listPods(api: CoreV1Api, selector: string, namespace: string | undefined, node: string | undefined): Promise<V1Pod[]> {
  const fieldSelector = node !== undefined ? `spec.nodeName=${node}` : undefined;
  try {
    const list = namespace !== undefined
      ? await api.listNamespacedPod({ namespace, labelSelector: selector, ...(fieldSelector ? { fieldSelector } : {}) })
      : await api.listPodForAllNamespaces({ labelSelector: selector, ...(fieldSelector ? { fieldSelector } : {}) });
    return list.items.filter((p) => p.status?.phase === "Running" && p.metadata?.deletionTimestamp === undefined);
  } catch (err) {
    throw new UnreachableError(`listing pods ${selector}${namespace !== undefined ? ` in ${namespace}` : ""} through the API server failed: ${errorMessage(err)}`);
  }
}

function agentPort(p: V1Pod): number {
  for (const c of p.spec?.containers ?? []) {
    const port = c.ports?.find((x) => x.name === "http-monitoring")?.containerPort;
    if (port !== undefined) return port;
  }
  return AGENT_DEFAULT_PORT;
}

/** A local listener whose every connection is a port-forward stream to pod:port. */
async function forwarder(kc: KubeConfig, namespace: string, pod: string, port: number, sockets: Set<Socket>): Promise<{ server: Server; url: string }> {
  const pf = new PortForward(kc);
  const server = createServer((sock) => {
    sockets.add(sock);
    sock.on("close", () => sockets.delete(sock));
    sock.on("error", () => undefined);
    // The error channel: the API server could not reach the pod's port; end the connection.
    const errors = new Writable({
      write(chunk: Buffer, _enc, cb): void {
        // (The channel's first message is the port preamble: empty once the client strips it.)
        if (chunk.length > 0) sock.destroy();
        cb();
      },
    });
    pf.portForward(namespace, pod, [port], sock, errors, sock)
      .then((ws) => {
        const w = typeof ws === "function" ? ws() : ws;
        sock.on("close", () => w?.close());
        w?.on("close", () => sock.end());
      })
      .catch(() => sock.destroy());
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => resolve());
  });
  const addr = server.address();
  if (addr === null || typeof addr === "string") throw new Error("local forwarder has no port");
  return { server, url: `http://127.0.0.1:${addr.port}` };
}

/**
 * The nodes running a ztunnel pod (label app=ztunnel), optionally only `node`, with their
 * agent pod (label k8s-app=istio-cni-node) on the same node; `namespace` limits the search.
 */
export async function kubeTargets(kc: KubeConfig, opts: { node?: string | undefined; namespace?: string | undefined }): Promise<KubeTargets> {
  const api = kc.makeApiClient(CoreV1Api);
  const [ztunnels, agents] = await Promise.all([listPods(api, ZTUNNEL_SELECTOR, opts.namespace, opts.node), listPods(api, AGENT_SELECTOR, opts.namespace, opts.node)]);
  if (ztunnels.length === 0) {
    throw new CommandFailedError(`no running ztunnel pod (label ${ZTUNNEL_SELECTOR})${opts.node !== undefined ? ` on node ${opts.node}` : ""}${opts.namespace !== undefined ? ` in namespace ${opts.namespace}` : ""}`);
  }
  const servers: Server[] = [];
  const sockets = new Set<Socket>();
  const nodes: NodeTarget[] = [];
  const open = async (p: V1Pod, port: number): Promise<string> => {
    const f = await forwarder(kc, p.metadata?.namespace ?? "default", p.metadata?.name ?? "", port, sockets);
    servers.push(f.server);
    return f.url;
  };
  for (const z of [...ztunnels].sort((a, b) => (a.spec?.nodeName ?? "").localeCompare(b.spec?.nodeName ?? ""))) {
    const node = z.spec?.nodeName ?? z.metadata?.name ?? "?";
    const agent = agents.find((a) => a.spec?.nodeName === node);
    nodes.push({
      name: node,
      netns: undefined,
      ztunnelAdmin: await open(z, ZTUNNEL_PORTS.admin),
      ztunnelReadiness: await open(z, ZTUNNEL_PORTS.readiness),
      ztunnelStats: await open(z, ZTUNNEL_PORTS.stats),
      // No agent pod on the node: a port nothing listens on, so status reports it unreachable.
      agent: agent !== undefined ? await open(agent, agentPort(agent)) : "http://127.0.0.1:9",
      inventory: undefined,
    });
  }
  return {
    nodes,
    close: async () => {
      for (const s of sockets) s.destroy();
      await Promise.all(servers.map((s) => new Promise<void>((r) => s.close(() => r()))));
    },
  };
}
