// Every number the bench produces is a named figure; a figure that could not be measured
// carries the reason instead. Ratios and targets are computed from figures only.

export type Figure = { value: number; unit: string } | { unavailable: string };

export type Figures = Record<string, Figure>;

export function isMeasured(f: Figure | undefined): f is { value: number; unit: string } {
  return f !== undefined && "value" in f && Number.isFinite(f.value);
}

/** Records `value` under `name`, or the reason it is missing when `value` is an Error. */
export function setFigure(figures: Figures, name: string, value: number | Error, unit: string): void {
  figures[name] = value instanceof Error ? { unavailable: value.message.split("\n")[0]!.slice(0, 300) } : { value, unit };
}
