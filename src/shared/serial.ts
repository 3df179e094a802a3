// Runs async operations one at a time, in call order. A failed operation does not stop the
// ones queued after it (each caller gets its own result or rejection).
export class SerialQueue {
  private tail: Promise<unknown> = Promise.resolve();

  run<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.tail.then(fn, fn);
    this.tail = run.catch(() => undefined);
    return run;
  }
}
