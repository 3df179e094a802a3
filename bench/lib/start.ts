import { errorMessage } from "../../src/shared/errors.js";
import { BenchUsageError } from "./errors.js";

/**
 * The start of a bench program: its options, or the exit code to return at once — 0 after the
 * usage text was asked for, 2 for a bad command line or when not root (the program builds
 * network namespaces, veth links and iptables rules). The reason goes to stderr.
 */
export function optionsOrExit<T>(script: string, parse: () => T): T | number {
  let opts: T;
  try {
    opts = parse();
  } catch (err) {
    process.stderr.write(`${errorMessage(err)}\n`);
    return err instanceof BenchUsageError && /^usage/.test(err.message) ? 0 : 2;
  }
  if (process.getuid?.() !== 0) {
    process.stderr.write(`npm run ${script} needs root (it creates network namespaces, veth links and iptables rules)\n`);
    return 2;
  }
  return opts;
}
