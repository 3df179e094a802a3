// The CNI plugin ↔ node agent contract (DESIGN §5, §6): the plugin-event wire format, the
// enrollment decision and its selectors. Both cni-plugin/ and src/agent/ import this module;
// neither imports the other.
export * from "./wire.js";
export * from "./selectors.js";
export * from "./enrollment.js";
