import { ZdsConfigError } from "./errors.js";

// Options are validated once and returned fully defaulted; a misspelled key is an error with
// a hint rather than a silently ignored setting.
export function validateOptions<T extends object>(component: string, given: Partial<T> | undefined, defaults: T): T {
  const out = { ...defaults };
  if (given === undefined) return out;
  const known = Object.keys(defaults);
  for (const [key, value] of Object.entries(given)) {
    if (!known.includes(key)) {
      throw new ZdsConfigError(`${component}: unknown option "${key}"; known options: ${known.join(", ")}`);
    }
    if (value === undefined) continue;
    const expected = typeof (defaults as Record<string, unknown>)[key];
    if (expected === "number" && (typeof value !== "number" || !Number.isFinite(value) || value < 0)) {
      throw new ZdsConfigError(`${component}: option "${key}" must be a non-negative number, got ${String(value)}`);
    }
    (out as Record<string, unknown>)[key] = value;
  }
  return out;
}
