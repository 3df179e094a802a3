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
