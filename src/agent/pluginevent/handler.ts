import type { CmdAddEvent, CmdDelEvent } from "../../cni-contract/index.js";

/**
 * What the plugin event server asks of the agent. The server only speaks HTTP; the agent's
 * enrollment logic lives behind this seam (and tests put a fake here).
 */
export interface PluginEventHandler {
  /** A pod's sandbox got its network; decide before the container may start. */
  onAdd(event: CmdAddEvent): Promise<AddDecision>;
  /** The runtime tore the sandbox down (best effort: may arrive late, twice, or never). */
  onDel(event: CmdDelEvent): Promise<void>;
  /** STATUS probe: undefined when ready for ADDs, otherwise what is still pending. */
  notReadyReason?(): string | undefined;
}

/**
 * enrolled / not-enrolled both let the pod start (200); refused blocks it (500 + reason),
 * which the plugin turns into a failed ADD so the pod never runs unprotected.
 */
export type AddDecision =
  | { outcome: "enrolled" }
  | { outcome: "not-enrolled"; reason: string }
  | { outcome: "refused"; reason: string };
