import { isMeasured, type Figures } from "./figures.js";

// Repeated rounds of the pod-to-pod rows. Each round measures raw, stunnel and HBONE back to
// back, so every round's ratios share one slice of machine load; across rounds, a figure is
// the median of its measured values (a round that could not measure it does not count), which
// keeps one noisy round from deciding a verdict. The per-round values stay in the details.

export interface MergedRounds {
  readonly figures: Figures;
  /** figure name → the value of each round that measured it, in round order. */
  readonly perRound: Record<string, number[]>;
}

export function mergeRounds(rounds: readonly Figures[]): MergedRounds {
  const figures: Figures = {};
  const perRound: Record<string, number[]> = {};
  const names = new Set(rounds.flatMap((r) => Object.keys(r)));
  for (const name of names) {
    const measured = rounds.map((r) => r[name]).filter((f) => f !== undefined);
    const values = measured.flatMap((f) => ("value" in f ? [f] : []));
    if (values.length === 0) {
      // Nothing measured: keep the first reason given.
      figures[name] = measured[0]!;
      continue;
    }
    perRound[name] = values.map((f) => f.value);
    figures[name] = { value: median(values.map((f) => f.value)), unit: values[0]!.unit };
  }
  return { figures, perRound };
}

/** Median; for an even count, the mean of the two middle values. */
export function median(xs: readonly number[]): number {
  if (xs.length === 0) throw new RangeError("median of nothing");
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 === 1 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

/**
 * figure / reference in each round (undefined where the round lacks either or the reference is
 * 0): the two were measured back to back there, so each round's ratio shares one slice of load.
 */
export function roundRatios(rounds: readonly Figures[], figure: string, reference: string): Array<number | undefined> {
  return rounds.map((r) => {
    const a = r[figure];
    const b = r[reference];
    return isMeasured(a) && isMeasured(b) && b.value !== 0 ? a.value / b.value : undefined;
  });
}

/** Median of the rounds' ratios that exist; undefined when no round has both figures. */
export function medianRatio(rounds: readonly Figures[], figure: string, reference: string): { value: number; count: number } | undefined {
  const xs = roundRatios(rounds, figure, reference).filter((x): x is number => x !== undefined);
  return xs.length === 0 ? undefined : { value: median(xs), count: xs.length };
}
