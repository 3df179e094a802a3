import { mkdtempSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { parseInventory } from "../../src/agent/enroll/inventory.js";
import { InventorySource } from "../../src/agent/enroll/inventory-source.js";
import { InventoryError } from "../../src/agent/errors.js";

const DOC = `
namespaces:
  - name: mesh
    labels: { istio.io/dataplane-mode: ambient }
  - name: plain
pods:
  - name: web
    namespace: mesh
    uid: 11111111-0000-4000-8000-000000000001
    serviceAccount: web-sa
    labels: { app: web }
    ips: [10.1.0.5]
  - name: db
    namespace: plain
    uid: 11111111-0000-4000-8000-000000000002
`;

describe("local inventory file", () => {
  it("parses namespaces and pods with defaults", () => {
    const inv = parseInventory(DOC);
    expect(inv.namespaces.get("mesh")).toEqual({ "kubernetes.io/metadata.name": "mesh", "istio.io/dataplane-mode": "ambient" });
    expect(inv.pods).toEqual([
      expect.objectContaining({ name: "web", namespace: "mesh", serviceAccount: "web-sa", labels: { app: "web" }, ips: ["10.1.0.5"], hostNetwork: false, requiresIps: false }),
      expect.objectContaining({ name: "db", namespace: "plain", serviceAccount: "default", ips: [] }),
    ]);
    expect(parseInventory("")).toEqual({ namespaces: new Map(), pods: [] });
  });

  it.each([
    ["pods: {}", /"pods" must be a list/],
    ["podz: []", /unknown key "podz"/],
    ["pods: [{name: a, uid: u1, labels: {x: 1}}]", /labels.x must be a string/],
    ["pods: [{name: a}]", /uid must be/],
    ["pods: [{name: a, uid: u1}, {name: b, uid: u1}]", /uid u1 is used twice/],
    ["pods: [{name: a, uid: u1, ips: [not-an-ip]}]", /ips must be a list of IP/],
    ["pods: [{name: A_b, uid: u1}]", /name must be a DNS name/],
    ["pods: [{name: a, uid: u1, serviceacount: x}]", /unknown key "serviceacount"/],
    ["namespaces: [{name: x}, {name: x}]", /listed twice/],
    ["pods: [", /not valid YAML/],
  ])("rejects %s", (text, msg) => {
    expect(() => parseInventory(text, "inv.yaml")).toThrow(InventoryError);
    expect(() => parseInventory(text, "inv.yaml")).toThrow(msg);
  });

  describe("InventorySource", () => {
    let dir: string;
    let src: InventorySource | undefined;
    afterEach(async () => {
      await src?.stop();
      rmSync(dir, { recursive: true, force: true });
    });

    /** A fresh directory with DOC as inventory.yaml; returns the file's path. */
    function inventoryFile(): string {
      dir = mkdtempSync(join(tmpdir(), "agent-inv-"));
      const path = join(dir, "inventory.yaml");
      writeFileSync(path, DOC);
      return path;
    }

    /** Replaces the file by rename (as editors and config maps do), namespace plain now ambient. */
    function labelPlainByRename(path: string): void {
      writeFileSync(join(dir, "tmp.yaml"), DOC.replace("- name: plain", "- name: plain\n    labels: { istio.io/dataplane-mode: ambient }"));
      renameSync(join(dir, "tmp.yaml"), path);
    }

    it("reloads on change (also when the file is replaced by rename) and keeps the last good view on a bad edit", async () => {
      const path = inventoryFile();
      src = new InventorySource({ path, debounceMs: 10, pollMs: 60_000 });
      let changes = 0;
      await src.start(() => changes++);
      expect(src.pods().map((p) => p.name)).toEqual(["web", "db"]);
      expect(await src.lookup("", "web")).toMatchObject({ namespace: "mesh" });
      expect(await src.lookup("plain", "web")).toBeUndefined();

      labelPlainByRename(path);
      await expect.poll(() => src?.namespaceLabels("plain")?.["istio.io/dataplane-mode"], { timeout: 3000 }).toBe("ambient");
      expect(changes).toBe(1);

      writeFileSync(path, "pods: [");
      await expect.poll(() => src?.reloadError, { timeout: 3000 }).toMatch(/not valid YAML/);
      expect(src.pods()).toHaveLength(2);
      expect(changes).toBe(1);
    });

    it("answers a lookup from the file as it is now, before the watch event's debounce fired", async () => {
      const path = inventoryFile();
      // The watch would fire only after an hour: the lookup itself must see the new file.
      src = new InventorySource({ path, debounceMs: 3_600_000, pollMs: 3_600_000 });
      let changes = 0;
      await src.start(() => changes++);
      expect(src.namespaceLabels("plain")?.["istio.io/dataplane-mode"]).toBeUndefined();
      labelPlainByRename(path);
      expect(await src.lookup("plain", "db")).toMatchObject({ namespace: "plain", name: "db" });
      expect(src.namespaceLabels("plain")?.["istio.io/dataplane-mode"]).toBe("ambient");
      expect(changes).toBe(1);
    });

    it("fails to start on a missing file with the path in the message", async () => {
      dir = mkdtempSync(join(tmpdir(), "agent-inv-"));
      src = new InventorySource({ path: join(dir, "nope.yaml") });
      await expect(src.start(() => {})).rejects.toThrow(/cannot read the inventory .*nope\.yaml/);
      src = undefined;
    });
  });
});
