import { AmbientError } from "../shared/errors.js";

// The agent's own failure kinds; each carries what a user needs to act.

/** An environment variable is malformed; the message names it and what is accepted. */
export class AgentConfigError extends AmbientError {
  /** The variable at fault, when one is. */
  readonly variable: string | undefined;

  constructor(message: string, variable?: string) {
    super("AGENT_CONFIG", message);
    this.variable = variable;
  }
}

/** The local inventory file cannot be read or does not have the expected shape. */
export class InventoryError extends AmbientError {
  constructor(message: string, options?: { cause?: unknown }) {
    super("AGENT_INVENTORY", message, options);
  }
}

/** No network namespace could be found for a pod (yet): the queue retries. */
export class NetnsNotFoundError extends AmbientError {
  constructor(uid: string, detail: string) {
    super("AGENT_NETNS_NOT_FOUND", `no network namespace found for pod ${uid}: ${detail}`);
  }
}

/** A host-side (node netns) rule or ipset command failed. */
export class HostRulesError extends AmbientError {
  constructor(message: string, options?: { cause?: unknown }) {
    super("AGENT_HOST_RULES", message, options);
  }
}
