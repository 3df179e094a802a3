import { execFileSync } from "node:child_process";
import { readFileSync, realpathSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { providedPrograms, shellCommands, spawnedPrograms } from "../fixtures/spawned-programs.js";

// A fresh machine runs scripts/install-system-deps.sh and then the demo, the suite, the bench
// and the image build: every program those spawn must come from a package the script installs,
// or from the base system / toolchain listed here.

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..", "..");
const SCRIPT = readFileSync(join(ROOT, "scripts", "install-system-deps.sh"), "utf8");

/** Essential packages of every Debian install, and the machine's own Node toolchain. */
const BASE = new Map<string, string>([
  ["sh", "dash (essential)"], ["/bin/sh", "dash (essential)"], ["bash", "bash (essential)"],
  ["true", "coreutils (essential)"], ["sleep", "coreutils (essential)"], ["cat", "coreutils (essential)"],
  ["id", "coreutils (essential)"], ["dirname", "coreutils (essential)"], ["cut", "coreutils (essential)"],
  ["date", "coreutils (essential)"], ["mktemp", "coreutils (essential)"], ["sort", "coreutils (essential)"],
  ["ln", "coreutils (essential)"], ["grep", "grep (essential)"], ["sed", "sed (essential)"], ["awk", "mawk (required)"], ["env", "coreutils (essential)"], ["mkdir", "coreutils (essential)"],
  ["rm", "coreutils (essential)"], ["cp", "coreutils (essential)"], ["du", "coreutils (essential)"], ["tar", "tar (essential)"],
  ["sysctl", "procps (required)"], ["getent", "libc-bin (essential)"], ["apt-get", "apt (required)"], ["debconf-set-selections", "debconf (essential)"], ["dpkg-query", "dpkg (essential)"],
  ["node", "the machine's Node 20 toolchain"], ["npm", "the machine's Node 20 toolchain"], ["npx", "the machine's Node 20 toolchain"],
  ["kubectl", "the machine's kubectl (not a bookworm package; the install script warns when missing)"],
]);

const USES = spawnedPrograms(ROOT, ["src", "test", "bench", "scripts", ".ci/run"]);

function provider(program: string, provided: Map<string, string>): string | undefined {
  const direct = provided.get(program) ?? BASE.get(program);
  if (direct !== undefined) return direct;
  // `iptables-${variant}`: some provided program must match the pattern.
  if (program.includes("${")) {
    const re = new RegExp(`^${program.split(/\$\{[^}]*\}/).map((s) => s.replace(/[.+]/g, "\\$&")).join("[\\w.-]+")}$`);
    return [...provided].find(([p]) => re.test(p))?.[1];
  }
  return undefined;
}

describe("system dependencies of a fresh machine", () => {
  it("the scan sees the programs we know are spawned (it cannot silently find nothing)", () => {
    const names = USES.map((u) => u.program);
    for (const p of ["tshark", "iptables-save", "podman", "stunnel4", "ss", "nsenter", "openssl", "/usr/bin/time", "ipset", "busybox", "iperf3", "gnuplot", "mmdebstrap", "strip"]) {
      expect(names, p).toContain(p);
    }
    expect(shellCommands('ulimit -n 64 && exec "$X" a; FOO=1 tshark -r x | grep y')).toEqual(["tshark", "grep"]);
    expect(shellCommands('cd "$(dirname "$0")/.." # ls\necho "not (a command)" \'nor this\' && mmdebstrap --x \\\n  bookworm out')).toEqual(["dirname", "mmdebstrap"]);
  });

  it("every spawned program comes from a package scripts/install-system-deps.sh provides, or the base system", () => {
    const provided = providedPrograms(SCRIPT);
    const missing = USES.filter((u) => provider(u.program, provided) === undefined).map((u) => `${u.program} (first used at ${u.where})`);
    expect(missing, "add `provide <debian-package> <program>` to scripts/install-system-deps.sh").toEqual([]);
  });

  it("each `provide` line names the Debian package that really ships the program (checked where installed)", () => {
    const paths = new Map<string, string[]>();
    for (const [program] of providedPrograms(SCRIPT)) {
      let path: string;
      try {
        path = program.startsWith("/") ? program : execFileSync("sh", ["-c", `command -v "${program}"`], { encoding: "utf8" }).trim();
        if (path === "") continue;
        const real = realpathSync(path);
        // usr-merged machine: dpkg knows /bin/ss, PATH says /usr/bin/ss; alternatives: the target.
        paths.set(program, [...new Set([path, path.replace(/^\/usr/, ""), real, real.replace(/^\/usr/, "")])]);
      } catch {
        continue; // not installed here: the install script would install it
      }
    }
    // One dpkg-query for all paths; it exits 1 when some path has no owner, stdout still lists the rest.
    let out: string;
    try {
      out = execFileSync("dpkg-query", ["-S", ...[...paths.values()].flat()], { encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] });
    } catch (err) {
      out = String((err as { stdout?: string }).stdout ?? "");
    }
    const owners = new Map<string, string[]>();
    for (const l of out.split("\n")) {
      const i = l.indexOf(": ");
      if (i > 0) owners.set(l.slice(i + 2), l.slice(0, i).split(", "));
    }
    const wrong: string[] = [];
    for (const [program, pkg] of providedPrograms(SCRIPT)) {
      const candidates = paths.get(program);
      if (candidates === undefined) continue;
      const o = candidates.flatMap((p) => owners.get(p) ?? []);
      // gcc → gcc-12 through its symlink: accept a versioned name of the same package.
      if (!o.some((x) => x === pkg || x.startsWith(`${pkg}-`))) wrong.push(`${program}: listed under ${pkg}, owned by ${o.join(", ") || "no package"}`);
    }
    expect(paths.size).toBeGreaterThan(10);
    expect(wrong).toEqual([]);
  });
});
