import { NativeSocketFactory } from "./native-factory.js";

/**
 * Sockets in the calling thread's own netns, without a mark: ztunnel's shared (non in-pod)
 * mode and tests. Transparent listeners still work (IP_TRANSPARENT on request).
 */
export class PlainSocketFactory extends NativeSocketFactory {
  constructor() {
    super({ netns: null, mark: undefined, reusePort: false, spoofSource: false });
  }
}
