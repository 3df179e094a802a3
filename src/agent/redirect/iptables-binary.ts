import { IptablesNotFoundError } from "./errors.js";
import type { IptablesVariantChoice } from "./options.js";
import type { CommandRunner } from "./runner.js";
import type { IpFamily } from "./rules.js";

// Which iptables backend programs the pod: the one the node's own `iptables` uses (Debian's
// alternatives pick iptables-nft by default; a node whose kube-proxy runs legacy keeps legacy).
// Pod rules and node rules then live in the same backend, which is also what Istio's agent does.
// Rules of both backends would work in a pod netns, but mixing them makes `iptables-save` of
// either one show half the picture. An explicit "nft" or "legacy" overrides the detection.

export type IptablesVariant = "nft" | "legacy";

export interface IptablesBinaries {
  variant: IptablesVariant;
  save: string;
  restore: string;
}

export function iptablesBinaries(variant: IptablesVariant, family: IpFamily): IptablesBinaries {
  const base = family === 6 ? "ip6tables" : "iptables";
  return { variant, save: `${base}-${variant}-save`, restore: `${base}-${variant}-restore` };
}

/** Detects the backend once per runner host. `iptables --version` prints "(nf_tables)" or "(legacy)". */
export async function detectIptablesVariant(host: CommandRunner, choice: IptablesVariantChoice = "auto"): Promise<IptablesVariant> {
  if (choice !== "auto") return choice;
  const version = await host.run("iptables", ["--version"]);
  if (version.code === 0) {
    if (/nf_tables/.test(version.stdout)) return "nft";
    if (/legacy/.test(version.stdout)) return "legacy";
  }
  for (const variant of ["nft", "legacy"] as const) {
    const res = await host.run(`iptables-${variant}`, ["--version"]);
    if (res.code === 0) return variant;
  }
  throw new IptablesNotFoundError(`\`iptables --version\`: ${(version.stderr || version.stdout).trim() || `exit ${version.code}`}`);
}
