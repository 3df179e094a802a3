import { CniCode, CniError } from "./errors.js";

export type CniCommand = "ADD" | "DEL" | "CHECK" | "VERSION" | "STATUS" | "GC";
const COMMANDS: readonly CniCommand[] = ["ADD", "DEL", "CHECK", "VERSION", "STATUS", "GC"];

export interface CmdEnv {
  command: CniCommand;
  containerId: string;
  netns: string;
  ifName: string;
  args: string;
  path: string;
}

// Which variables each command requires (CNI SPEC.md "Parameters"); CNI_NETNS is optional for DEL.
const REQUIRED: Record<CniCommand, readonly string[]> = {
  ADD: ["CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME", "CNI_PATH"],
  CHECK: ["CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME", "CNI_PATH"],
  DEL: ["CNI_CONTAINERID", "CNI_IFNAME", "CNI_PATH"],
  VERSION: [],
  STATUS: [],
  GC: [],
};

const CONTAINER_ID = /^[a-zA-Z0-9][a-zA-Z0-9_.-]*$/;

function validIfName(name: string): boolean {
  return name.length <= 15 && name !== "." && name !== ".." && !/[/:\s]/.test(name);
}

/** Reads and validates the CNI_* environment the runtime sets for one invocation. */
export function readCmdEnv(env: NodeJS.ProcessEnv): CmdEnv {
  const raw = env.CNI_COMMAND ?? "";
  if (raw === "") throw new CniError(CniCode.InvalidEnv, "required env variables [CNI_COMMAND] missing");
  if (!(COMMANDS as readonly string[]).includes(raw)) {
    throw new CniError(CniCode.InvalidEnv, `unknown CNI_COMMAND: ${raw}`);
  }
  const command = raw as CniCommand;
  const missing = REQUIRED[command].filter((k) => (env[k] ?? "") === "");
  if (missing.length > 0) {
    throw new CniError(CniCode.InvalidEnv, `required env variables [${missing.join(",")}] missing`);
  }
  const out: CmdEnv = {
    command,
    containerId: env.CNI_CONTAINERID ?? "",
    netns: env.CNI_NETNS ?? "",
    ifName: env.CNI_IFNAME ?? "",
    args: env.CNI_ARGS ?? "",
    path: env.CNI_PATH ?? "",
  };
  if (REQUIRED[command].includes("CNI_CONTAINERID") && !CONTAINER_ID.test(out.containerId)) {
    throw new CniError(CniCode.InvalidEnv, `invalid CNI_CONTAINERID "${out.containerId}"`);
  }
  if (REQUIRED[command].includes("CNI_IFNAME") && !validIfName(out.ifName)) {
    throw new CniError(CniCode.InvalidEnv, `invalid CNI_IFNAME "${out.ifName}": at most 15 characters, no '/', ':' or spaces`);
  }
  return out;
}
