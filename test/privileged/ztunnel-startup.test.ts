import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, expect, it } from "vitest";
import { describePrivileged } from "../harness/privileged.js";
import { runZtunnelToExit as runZtunnel } from "../fixtures/ztunnel-run-once.js";

// The ztunnel binary refuses to start on bad configuration, with one line naming the variable.

describePrivileged("ztunnel start-up configuration errors", () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "ztunnel-startup-"));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it("a malformed variable stops start-up naming the variable", async () => {
    const r = await runZtunnel({ ZTUNNEL_WORKER_THREADS: "two", CA_ROOT_DIR: dir });
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^ztunnel: ZTUNNEL_WORKER_THREADS: "two" is not an integer/m);
    const r2 = await runZtunnel({ CONNECTION_TERMINATION_DEADLINE: "soon", CA_ROOT_DIR: dir });
    expect(r2.stderr).toMatch(/CONNECTION_TERMINATION_DEADLINE: "soon" is not a duration/);
    const r3 = await runZtunnel({ INPOD_PORT_REUSE: "false", ZTUNNEL_WORKER_THREADS: "2", CA_ROOT_DIR: dir });
    expect(r3.code).toBe(1);
    expect(r3.stderr).toMatch(/INPOD_PORT_REUSE: false needs ZTUNNEL_WORKER_THREADS=1/);
  });

  it("without CA_ROOT_DIR, or with an empty one and no explicit generation, ztunnel refuses to start", async () => {
    const r = await runZtunnel({});
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/CA_ROOT_DIR: is required/);
    const r2 = await runZtunnel({ CA_ROOT_DIR: dir });
    expect(r2.code).toBe(1);
    expect(r2.stderr).toMatch(/no CA root in .*CA_ROOT_GENERATE=true/);
  });

  it("a local config file with an error stops start-up naming the field", async () => {
    const { writeFile } = await import("node:fs/promises");
    const path = join(dir, "bad.yaml");
    await writeFile(path, "workloads:\n  - uid: x\n    name: x\n    namespace: ns\n    workloadIps: [\"10.0.0.x\"]\n");
    const r = await runZtunnel({ CA_ROOT_DIR: join(dir, "gen"), CA_ROOT_GENERATE: "true", LOCAL_XDS_PATH: path });
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/workloads\[0\]\.workloadIps\[0\]/);
  });
});
