import { AmbientError } from "../../shared/errors.js";

export class RedirectOptionsError extends AmbientError {
  constructor(message: string) {
    super("REDIRECT_BAD_OPTIONS", message);
  }
}

/** A command run for redirection failed; names where (netns), what (command line) and why (stderr). */
export class RedirectCommandError extends AmbientError {
  readonly where: string;
  readonly command: string;
  readonly exitCode: number;
  readonly stderr: string;

  constructor(where: string, command: string, exitCode: number, stderr: string, options?: { cause?: unknown }) {
    const why = stderr.trim() || "(no stderr)";
    super("REDIRECT_COMMAND_FAILED", `in-pod redirection in netns ${where}: \`${command}\` failed (exit ${exitCode}): ${why}`, options);
    this.where = where;
    this.command = command;
    this.exitCode = exitCode;
    this.stderr = stderr;
  }
}

export class IptablesNotFoundError extends AmbientError {
  constructor(detail: string) {
    super(
      "REDIRECT_NO_IPTABLES",
      `no usable iptables found (${detail}); install the iptables package (iptables-nft or iptables-legacy) on the node`,
    );
  }
}

/** Rules were applied but iptables-save shows something else: a normalisation gap or a concurrent writer. */
export class RedirectReadbackError extends AmbientError {
  readonly where: string;
  readonly problems: string[];

  constructor(where: string, problems: string[]) {
    super(
      "REDIRECT_READBACK_MISMATCH",
      `in-pod redirection in netns ${where}: rules read back differently after iptables-restore: ${problems.join("; ")} ` +
        "(another process changing iptables in this netns at the same time, or an iptables version printing rules differently)",
    );
    this.where = where;
    this.problems = problems;
  }
}
