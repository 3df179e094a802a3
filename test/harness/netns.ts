// The implementation moved to src/demo/netns.ts (the local demo needs it in production code);
// the tests keep importing it from here.
export { createNetns, deleteNetns, execIn, killAndWait, netnsPath, run, runId, spawnIn, type ExecResult } from "../../src/demo/netns.js";
