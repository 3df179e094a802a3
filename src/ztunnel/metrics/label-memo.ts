import { labelValues, trafficLabels, type TrafficLabelInput } from "./labels.js";

// Label values of recent connections, remembered per key for one state version. Connections of
// one pod to the same peer carry the same ~23 labels; building them (workload copies, canonical
// names, the value array and its series key) per connection was a visible share of the accept
// path at thousands of connections per second. The caller's key must name everything the
// labels are built from besides the state (which `version` stands for).

/** Distinct keys kept before the memo starts over (bounds memory against many peers). */
const MAX_KEYS = 4096;

export class LabelMemo {
  private version = Number.NaN;
  private readonly memo = new Map<string, readonly string[]>();

  /** The label values for `key` at state `version`, built by `input` on a miss. */
  values(version: number, key: string, input: () => TrafficLabelInput): readonly string[] {
    if (version !== this.version) {
      this.memo.clear();
      this.version = version;
    }
    let v = this.memo.get(key);
    if (v === undefined) {
      if (this.memo.size >= MAX_KEYS) this.memo.clear();
      v = Object.freeze(labelValues(trafficLabels(input())));
      this.memo.set(key, v);
    }
    return v;
  }
}
