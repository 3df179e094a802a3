// L4 authorization (ztunnel's Authorization model): compile, evaluate, recheck, adapt.
export { PolicyAuthorizer, UNKNOWN_DESTINATION, type PolicyAuthorizerOptions } from "./authorizer.js";
export { compilePolicies, compilePolicy, validatePolicies, type CompiledPolicy } from "./compile.js";
export { AuthzEngine, NO_ALLOW_POLICIES, NO_POLICIES, NOT_ALLOWED, recheck, type EngineStats, type RecheckResult } from "./engine.js";
export { AuthzPolicyError } from "./errors.js";
export type * from "./types.js";
