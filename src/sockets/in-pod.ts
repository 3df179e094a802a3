import type { NetnsHandle } from "../native/index.js";
import { NativeSocketFactory } from "./native-factory.js";

export interface InPodSocketFactoryOptions {
  /** SO_MARK carried by every socket so the pod's redirection rules let it through (Istio: 0x539). */
  mark: number;
  /** SO_REUSEPORT on listeners: each proxy worker thread binds its own listener on the port. */
  reusePort: boolean;
}

/**
 * Sockets inside a pod's netns. Every socket is created in `netns` and carries the mark;
 * listeners get SO_REUSEPORT (when asked) and IP_TRANSPARENT when they capture inbound traffic;
 * outbound sockets bound to a source address use IP_TRANSPARENT (spoofing the original client)
 * and IP_BIND_ADDRESS_NO_PORT. The factory borrows `netns`: the caller keeps ownership and must
 * not close it while the factory is in use.
 */
export class InPodSocketFactory extends NativeSocketFactory {
  constructor(netns: NetnsHandle, opts: InPodSocketFactoryOptions) {
    super({ netns, mark: opts.mark, reusePort: opts.reusePort, spoofSource: true });
  }
}
