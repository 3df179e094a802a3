// Base of every typed error in the product: a stable, greppable code plus what a user
// needs to act. Subsystems extend it; the proxy maps its errors to HTTP status in one place.
export class AmbientError extends Error {
  readonly code: string;

  constructor(code: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
    this.name = new.target.name;
  }
}

export function errorMessage(err: unknown): string {
  if (err instanceof Error) return err.message;
  return String(err);
}
