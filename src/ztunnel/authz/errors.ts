import { AmbientError } from "../../shared/errors.js";

// A policy we refuse to enforce. `path` names the offending field the way a user would find it
// in the config (`policies[2].rules[0][1][0].principals[3]`), `detail` says what is wrong.
export class AuthzPolicyError extends AmbientError {
  readonly path: string;
  readonly detail: string;

  constructor(path: string, detail: string) {
    super("AUTHZ_POLICY_INVALID", `${path}: ${detail}`);
    this.path = path;
    this.detail = detail;
  }
}
