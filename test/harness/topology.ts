// The implementation moved to src/demo/topology.ts (the local demo builds the same topology in
// production code); the tests keep importing it from here.
export {
  cleanupStale,
  Topology,
  TOPOLOGY_PREFIX,
  TOPOLOGY_STATE_DIR,
  withTopology,
  type NodeInfo,
  type PodInfo,
  type TopologyExecOptions,
  type TopologySpec,
} from "../../src/demo/topology.js";
