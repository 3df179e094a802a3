import { createRequire } from "node:module";
import { dirname } from "node:path";
import { getAsset } from "node:sea";
import { Script } from "node:vm";

// Entry of the single executable (scripts/build-cni-plugin.mjs). The plugin's bundle is an
// asset, compiled with a V8 code cache taken after a training ADD at build time: it holds the
// bytecode of every function an ADD runs, where Node's own SEA code cache holds only the top
// level and leaves the rest to lazy compilation on each of the runtime's calls (~3-5 ms).
// A cache V8 refuses (other V8 flags in NODE_OPTIONS) only costs that compilation again.
// Asset names: the same in scripts/build-cni-plugin.mjs.
const PROGRAM_ASSET = "ambient-cni.js";
const CODE_CACHE_ASSET = "ambient-cni.codecache";

/** The bundle is wrapped as one CommonJS function expression, the way Node wraps a module. */
type ProgramFunction = (
  exports: object,
  require: NodeJS.Require,
  module: { exports: object },
  filename: string,
  dirname: string,
) => void;

const script = new Script(getAsset(PROGRAM_ASSET, "utf8"), {
  filename: PROGRAM_ASSET,
  cachedData: Buffer.from(getAsset(CODE_CACHE_ASSET)),
});
const program = script.runInThisContext() as ProgramFunction;
const mod = { exports: {} };
// The bundle requires built-in modules only.
program(mod.exports, createRequire(process.execPath), mod, process.execPath, dirname(process.execPath));
