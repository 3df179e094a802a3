import { mkdir } from "node:fs/promises";
import { join } from "node:path";
import { errorMessage } from "../../src/shared/errors.js";
import type { Topology } from "../../test/harness/topology.js";
import { startFloorPath, type FloorKind } from "../floor/tunnel.js";
import { makeStunnelPki } from "../stunnel/certs.js";
import { startStunnelPath, type StunnelPath } from "../stunnel/tunnel.js";
import { BenchError, shortReason } from "./errors.js";

// The two-hop relay paths of the pod-to-pod rows, each a process per node between the client
// pod (node 0) and the server pod (node 1): stunnel (the reference) and the Node floor
// (bench/floor). Started once per mesh; a path that does not start is reported unavailable
// with its reason, and the other paths still run.

export type RelayPathName = "stunnel" | FloorKind;

/** The server pod's ports a relay path forwards to, by the name the rows dial. */
export interface RelayTargets {
  iperf: number;
  echo: number;
  close: number;
}

/** Each path's first port (iperf, echo, close at +0, +10, +20; the far hop listens at +1). */
const BASE_PORT: Record<RelayPathName, number> = { stunnel: 15300, nodetls: 15400, nodetcp: 15500 };

export class RelayPaths {
  private readonly up = new Map<RelayPathName, StunnelPath>();
  private readonly why = new Map<RelayPathName, string>();

  static async start(topo: Topology, dir: string, serverIp: string, targets: RelayTargets, names: readonly RelayPathName[], log: (s: string) => void): Promise<RelayPaths> {
    const paths = new RelayPaths();
    const floorPki = names.some((n) => n !== "stunnel") ? await makeFloorPki(join(dir, "floor")) : undefined;
    for (const name of names) {
      const base = BASE_PORT[name];
      const forwards = (["iperf", "echo", "close"] as const).map((kind, i) => ({ name: kind, entryPort: base + 10 * i, targetPort: targets[kind] }));
      try {
        const path = name === "stunnel" ? await startStunnelPath(topo, join(dir, "stunnel"), 0, 1, serverIp, forwards) : await startFloorPath(topo, name, floorPki!, 0, 1, serverIp, forwards);
        paths.up.set(name, path);
      } catch (err) {
        paths.why.set(name, `${name} path did not start: ${shortReason(errorMessage(err))}`);
        log(paths.why.get(name)!);
      }
    }
    return paths;
  }

  /** The path's ends; throws why it is unavailable. */
  get(name: RelayPathName): StunnelPath {
    const p = this.up.get(name);
    if (p === undefined) throw new BenchError(this.why.get(name) ?? `${name} path not started`);
    return p;
  }

  /** Its two relay processes (CPU accounting); none when it did not start. */
  pids(name: RelayPathName): number[] {
    return this.up.get(name)?.pids ?? [];
  }
}

export function isRelayPath(path: string): path is RelayPathName {
  return path in BASE_PORT;
}

async function makeFloorPki(dir: string): ReturnType<typeof makeStunnelPki> {
  await mkdir(dir, { recursive: true, mode: 0o700 });
  return makeStunnelPki(dir);
}
