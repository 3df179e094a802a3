import { NetnsHandle } from "../../native/index.js";
import type { NetnsOpener } from "./ops.js";

// Kept apart from ops.ts so kernel-free code and unit tests never load the native addon.
export const nativeOpener: NetnsOpener = { open: (p) => NetnsHandle.open(p) };
