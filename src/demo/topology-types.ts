// What a Topology is made of (DESIGN §11): nodes, pods and their addresses.

export interface TopologySpec {
  nodes: number;
  podsPerNode: number;
  ipv6?: boolean;
  /** Run id used in every name (1-6 chars of [0-9a-z]); random when absent. */
  id?: string;
  /** Prefix of every netns name (default TOPOLOGY_PREFIX); the demo uses its own so test sweeps never touch it. */
  prefix?: string;
  /** Where the owner record goes (default TOPOLOGY_STATE_DIR). */
  stateDir?: string;
}

export interface NodeInfo {
  index: number;
  ns: string;
  netnsPath: string;
  ip: string;
  ip6?: string;
  podCidr: string;
  podCidr6?: string;
  /** Node-side IP facing its pods (the pods' default gateway). */
  gateway: string;
  gateway6?: string;
}

export interface PodInfo {
  name: string;
  node: number;
  ns: string;
  netnsPath: string;
  ip: string;
  ip6?: string;
  /** The pod's veth end inside the node netns. */
  hostVeth: string;
}

export interface TopologyExecOptions {
  input?: string;
}
