import { logger, type Logger } from "../../shared/log.js";
import { applyRedirect, type ApplyResult } from "./applier.js";
import { detectIptablesVariant, type IptablesVariant } from "./iptables-binary.js";
import { resolveRedirectOptions, type RedirectOptions, type RedirectOptionsInput } from "./options.js";
import { removeRedirect, type RemoveResult } from "./remover.js";
import { hostRunner, netnsRunner, type CommandRunner } from "./runner.js";
import type { PodRedirectOverrides } from "./pod-options.js";
import type { RedirectContext } from "./state.js";
import { checkRedirect, type RedirectCheck } from "./verifier.js";

export interface PodRedirectorDeps {
  /** Where this component logs (default: a child of the process root). */
  log?: Logger;
  /** Where the iptables backend is detected (default: this process' own namespaces). */
  host?: CommandRunner;
  /** Skip detection (tests, or a backend chosen by configuration). */
  variant?: IptablesVariant;
  /** Builds the runner for a netns path (default: nsenter --net=<path>). */
  runnerFor?: (netnsPath: string) => CommandRunner;
}

/**
 * In-pod redirection for one configuration: apply, remove and check the rules of DESIGN §7 in a
 * pod netns, given by path (or as a ready CommandRunner). Callers serialise calls per netns.
 */
export class PodRedirector {
  private readonly log: Logger;
  readonly options: RedirectOptions;
  private variant: Promise<IptablesVariant> | undefined;
  private readonly deps: PodRedirectorDeps;

  constructor(options: RedirectOptionsInput = {}, deps: PodRedirectorDeps = {}) {
    this.log = deps.log ?? logger("redirect");
    this.options = resolveRedirectOptions(options);
    this.deps = deps;
    if (deps.variant) this.variant = Promise.resolve(deps.variant);
  }

  /** The iptables backend in use, detected on first need. */
  async iptablesVariant(): Promise<IptablesVariant> {
    this.variant ??= detectIptablesVariant(this.deps.host ?? hostRunner(), this.options.iptables);
    try {
      return await this.variant;
    } catch (err) {
      this.variant = undefined; // let a later call retry (e.g. after iptables gets installed)
      throw err;
    }
  }

  async apply(netns: string | CommandRunner, pod: PodRedirectOverrides = {}): Promise<ApplyResult> {
    const ctx = await this.context(netns, pod);
    const res = await applyRedirect(ctx);
    if (res.outcome === "applied") this.log.info({ netns: ctx.runner.where, changes: res.changes }, "in-pod redirection applied");
    else this.log.debug({ netns: ctx.runner.where }, "in-pod redirection already in place");
    return res;
  }

  async remove(netns: string | CommandRunner, pod: PodRedirectOverrides = {}): Promise<RemoveResult> {
    const ctx = await this.context(netns, pod);
    const res = await removeRedirect(ctx);
    if (res.outcome === "removed") this.log.info({ netns: ctx.runner.where, changes: res.changes }, "in-pod redirection removed");
    return res;
  }

  async check(netns: string | CommandRunner, pod: PodRedirectOverrides = {}): Promise<RedirectCheck> {
    return await checkRedirect(await this.context(netns, pod));
  }

  /** The node's options with one pod's overrides (its DNS capture annotation). */
  optionsFor(pod: PodRedirectOverrides): RedirectOptions {
    return pod.dnsCapture === undefined || pod.dnsCapture === this.options.dnsCapture ? this.options : { ...this.options, dnsCapture: pod.dnsCapture };
  }

  private async context(netns: string | CommandRunner, pod: PodRedirectOverrides): Promise<RedirectContext> {
    const runner = typeof netns === "string" ? (this.deps.runnerFor ?? netnsRunner)(netns) : netns;
    return { runner, options: this.optionsFor(pod), variant: await this.iptablesVariant() };
  }
}
