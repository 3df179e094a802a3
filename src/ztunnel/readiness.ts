// Readiness as a set of named checks (Istio's "blocking tasks"): each says what it still
// waits for, so /healthz/ready can answer 500 with the list instead of a bare "not ready".

export type ReadinessCheck = () => readonly string[];

export interface ReadinessReport {
  readonly ready: boolean;
  readonly pending: readonly string[];
}

export class Readiness {
  private readonly checks = new Map<string, ReadinessCheck>();

  /** `check` returns what is pending (empty when this part is ready). */
  register(name: string, check: ReadinessCheck): void {
    this.checks.set(name, check);
  }

  report(): ReadinessReport {
    const pending: string[] = [];
    for (const [name, check] of this.checks) {
      for (const item of check()) pending.push(`${name}: ${item}`);
    }
    return { ready: pending.length === 0, pending };
  }
}
