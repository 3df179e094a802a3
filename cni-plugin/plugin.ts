import { cmdAdd, cmdCheck, cmdDel, cmdGc, cmdStatus, type Invocation } from "./commands.js";
import { readCmdEnv } from "./cni/env.js";
import { CniCode, CniError, toErrorObject } from "./cni/errors.js";
import { CURRENT_VERSION, SUPPORTED_VERSIONS, isSupported } from "./cni/version.js";
import { commandAllowed, configVersion, decodeStdin, parseConfig } from "./config.js";
import type { PluginLog } from "./log.js";

export interface PluginOutcome {
  /** Exactly what goes to stdout ("" = nothing). */
  stdout: string;
  exitCode: number;
  /** The run dir from the config, once known (for forwarding logs). */
  runDir: string | undefined;
}

/** One CNI invocation, independent of process globals so tests can run it in-process. */
export async function runPlugin(env: NodeJS.ProcessEnv, readStdin: () => Promise<string>, log: PluginLog): Promise<PluginOutcome> {
  let errVersion: string = CURRENT_VERSION;
  let runDir: string | undefined;
  try {
    const cmdEnv = readCmdEnv(env);
    if (cmdEnv.command === "VERSION") {
      const info = { cniVersion: CURRENT_VERSION, supportedVersions: [...SUPPORTED_VERSIONS] };
      return { stdout: JSON.stringify(info) + "\n", exitCode: 0, runDir };
    }
    const raw = decodeStdin(await readStdin());
    const v = configVersion(raw);
    if (isSupported(v)) errVersion = v;
    const conf = parseConfig(raw);
    runDir = conf.runDir;
    log.setLevel(conf.logLevel);
    const refused = commandAllowed(cmdEnv.command, conf.cniVersion);
    if (refused) throw refused;
    const inv: Invocation = { env: cmdEnv, conf, log };
    let out: string | undefined;
    switch (cmdEnv.command) {
      case "ADD":
        out = await cmdAdd(inv);
        break;
      case "DEL":
        out = await cmdDel(inv);
        break;
      case "CHECK":
        out = cmdCheck(inv);
        break;
      case "STATUS":
        out = await cmdStatus(inv);
        break;
      case "GC":
        out = cmdGc();
        break;
    }
    return { stdout: out === undefined ? "" : out + "\n", exitCode: 0, runDir };
  } catch (err) {
    const cniErr =
      err instanceof CniError ? err : new CniError(CniCode.Internal, `internal error: ${(err as Error)?.message ?? String(err)}`);
    log.error(cniErr.message, { code: cniErr.cniCode, details: cniErr.details, command: env.CNI_COMMAND ?? "" });
    return { stdout: JSON.stringify(toErrorObject(cniErr, errVersion)) + "\n", exitCode: 1, runDir };
  }
}
