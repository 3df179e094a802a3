export * from "./values.js";
export * from "./env.js";
