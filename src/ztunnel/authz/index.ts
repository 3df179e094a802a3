// L4 authorization, the one policy model (DESIGN §14): validate (untrusted input → model),
// compile (model → evaluable, per worker), evaluate and re-check (engine), adapt (authorizer).
export { PolicyAuthorizer, UNKNOWN_DESTINATION, type CheckInput, type PolicyAuthorizerOptions } from "./authorizer.js";
export { compilePolicies, compilePolicy, type CompiledPolicy } from "./compile.js";
export { AuthzEngine, NO_ALLOW_POLICIES, NO_POLICIES, NOT_ALLOWED, recheck, type EngineStats, type RecheckResult } from "./engine.js";
export { AuthzPolicyError } from "./errors.js";
export { parsePolicies, parsePolicy } from "./validate.js";
export * from "./types.js";
