import { errorMessage } from "../../src/shared/errors.js";

// Everything the bench creates registers how to undo it here; run() undoes in reverse order,
// on normal exit, on failure and on SIGINT/SIGTERM (each step bounded, errors collected).

type Step = { what: string; undo: () => Promise<void> };

export class Teardown {
  private readonly steps: Step[] = [];
  private running: Promise<string[]> | undefined;

  add(what: string, undo: () => Promise<void>): void {
    this.steps.push({ what, undo });
  }

  /** Undoes one registered step early (e.g. a row's topology once the row is done). */
  async runOne(what: string): Promise<void> {
    const i = this.steps.findLastIndex((s) => s.what === what);
    if (i < 0) return;
    const [step] = this.steps.splice(i, 1);
    await step!.undo();
  }

  /** Undoes everything still registered; returns the errors (never throws). */
  async run(stepTimeoutMs = 60_000): Promise<string[]> {
    this.running ??= (async () => {
      const errors: string[] = [];
      while (this.steps.length > 0) {
        const step = this.steps.pop()!;
        let timer: NodeJS.Timeout | undefined;
        try {
          await Promise.race([
            step.undo(),
            new Promise((_, reject) => (timer = setTimeout(() => reject(new Error(`timed out after ${stepTimeoutMs} ms`)), stepTimeoutMs))),
          ]);
        } catch (err) {
          errors.push(`${step.what}: ${errorMessage(err)}`);
        } finally {
          clearTimeout(timer);
        }
      }
      return errors;
    })();
    return await this.running;
  }
}

/** Rejects with `what` timed out after `ms`; the caller's finally/teardown ends the work. */
export async function withTimeout<T>(what: string, ms: number, p: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      p,
      new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`${what} timed out after ${ms < 10_000 ? `${ms} ms` : `${Math.round(ms / 1000)} s`}`)), ms))),
    ]);
  } finally {
    clearTimeout(timer);
  }
}
