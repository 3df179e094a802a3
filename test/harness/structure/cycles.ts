/**
 * Import cycles of a graph: its strongly connected components with more than one file (or a
 * file importing itself), each reported as one concrete cycle path a -> b -> ... -> a.
 */
export function findCycles(graph: ReadonlyMap<string, readonly string[]>): string[][] {
  // Tarjan's algorithm, iterative so deep graphs cannot overflow the stack.
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const onStack = new Set<string>();
  const stack: string[] = [];
  const components: string[][] = [];
  let next = 0;
  const edges = (n: string): readonly string[] => graph.get(n) ?? [];

  for (const start of graph.keys()) {
    if (index.has(start)) continue;
    const work: Array<{ node: string; i: number }> = [{ node: start, i: 0 }];
    index.set(start, next);
    low.set(start, next++);
    stack.push(start);
    onStack.add(start);
    while (work.length > 0) {
      const frame = work[work.length - 1]!;
      const out = edges(frame.node);
      if (frame.i < out.length) {
        const to = out[frame.i++]!;
        if (!index.has(to)) {
          index.set(to, next);
          low.set(to, next++);
          stack.push(to);
          onStack.add(to);
          work.push({ node: to, i: 0 });
        } else if (onStack.has(to)) {
          low.set(frame.node, Math.min(low.get(frame.node)!, index.get(to)!));
        }
        continue;
      }
      work.pop();
      if (work.length > 0) {
        const parent = work[work.length - 1]!.node;
        low.set(parent, Math.min(low.get(parent)!, low.get(frame.node)!));
      }
      if (low.get(frame.node) === index.get(frame.node)) {
        const comp: string[] = [];
        let n: string;
        do {
          n = stack.pop()!;
          onStack.delete(n);
          comp.push(n);
        } while (n !== frame.node);
        if (comp.length > 1 || edges(frame.node).includes(frame.node)) components.push(comp);
      }
    }
  }
  return components.map((comp) => cyclePath(graph, new Set(comp)));
}

// One shortest cycle through the component's first file (in sorted order), for the message.
function cyclePath(graph: ReadonlyMap<string, readonly string[]>, comp: Set<string>): string[] {
  const start = [...comp].sort()[0]!;
  const prev = new Map<string, string>();
  const queue = [start];
  while (queue.length > 0) {
    const n = queue.shift()!;
    for (const to of graph.get(n) ?? []) {
      if (!comp.has(to)) continue;
      if (to === start) {
        const path = [n];
        for (let p = n; p !== start; ) path.unshift((p = prev.get(p)!));
        return [...path, start];
      }
      if (!prev.has(to)) {
        prev.set(to, n);
        queue.push(to);
      }
    }
  }
  return [start, start];
}
