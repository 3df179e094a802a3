import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { createServer, connect, type AddressInfo, type Server, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { connect as tlsConnect } from "node:tls";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { floorArgv, parseFloorArgs, type FloorArgs } from "../../bench/floor/args.js";
import { makeStunnelPki, type StunnelPki } from "../../bench/stunnel/certs.js";
import { waitForLine } from "../harness/child-output.js";

// The bench's Node floor relay (bench/floor): its command line, and that a pair of relays
// carries bytes both ways with half-close kept, over TCP and over mutual TLS, on loopback.

const RELAY = join(import.meta.dirname, "..", "..", "dist", "bench", "floor", "relay.js");

describe("bench floor relay arguments", () => {
  it("round-trips through floorArgv and parseFloorArgs", () => {
    const a: FloorArgs = {
      mode: "tls-client",
      forwards: [{ listen: { host: "10.0.0.1", port: 15400 }, connect: { host: "10.0.1.2", port: 15401 } }],
      pki: { certFile: "/c.pem", keyFile: "/c.key", caFile: "/ca.pem" },
    };
    expect(floorArgv(a)).toEqual(["tls-client", "10.0.0.1:15400=10.0.1.2:15401", "--cert", "/c.pem", "--key", "/c.key", "--ca", "/ca.pem"]);
    expect(parseFloorArgs(floorArgv(a))).toEqual(a);
    expect(parseFloorArgs(["tcp", "::1:1=::1:2"]).forwards[0]).toEqual({ listen: { host: "::1", port: 1 }, connect: { host: "::1", port: 2 } });
  });

  it("says what is wrong with a bad command line", () => {
    expect(() => parseFloorArgs(["udp", "a:1=b:2"])).toThrow(/mode must be one of tcp, tls-client, tls-server/);
    expect(() => parseFloorArgs(["tcp"])).toThrow(/at least one <listen>=<connect> forward/);
    expect(() => parseFloorArgs(["tcp", "a:1"])).toThrow(/neither a flag nor/);
    expect(() => parseFloorArgs(["tcp", "a:0=b:2"])).toThrow(/listen address "a:0" is not host:port/);
    expect(() => parseFloorArgs(["tcp", "a:1=b"])).toThrow(/connect address "b" is not host:port/);
    expect(() => parseFloorArgs(["tcp", "a:1=b:2", "--cert", "x"])).toThrow(/tcp mode takes no certificates/);
    expect(() => parseFloorArgs(["tls-server", "a:1=b:2", "--cert", "x", "--key", "y"])).toThrow(/needs --cert, --key and --ca/);
    expect(() => parseFloorArgs(["tls-server", "a:1=b:2", "--ca"])).toThrow(/--ca needs a file/);
  });
});

describe("bench floor relay on loopback", () => {
  let dir: string;
  let pki: StunnelPki;
  let echo: Server;
  let echoPort: number;
  const children: ChildProcess[] = [];

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "floor-test-"));
    pki = await makeStunnelPki(dir);
    // Echoes, and ends its half only once the client has ended its own (half-close observable).
    echo = createServer({ allowHalfOpen: true }, (s) => {
      s.on("data", (d: Buffer) => s.write(d));
      s.on("end", () => setTimeout(() => s.end("bye"), 20));
    });
    await new Promise<void>((r) => echo.listen(0, "127.0.0.1", r));
    echoPort = (echo.address() as AddressInfo).port;
  });

  afterAll(async () => {
    for (const c of children) c.kill("SIGKILL");
    await new Promise((r) => echo.close(r));
    rmSync(dir, { recursive: true, force: true });
  });

  async function relay(args: FloorArgs): Promise<void> {
    const child = spawn(process.execPath, [RELAY, ...floorArgv(args)], { stdio: ["ignore", "pipe", "pipe"] });
    children.push(child);
    await waitForLine(child, "ready", 10_000);
  }

  async function freePort(): Promise<number> {
    const s = createServer();
    await new Promise<void>((r) => s.listen(0, "127.0.0.1", r));
    const port = (s.address() as AddressInfo).port;
    await new Promise((r) => s.close(r));
    return port;
  }

  /** Sends a message, half-closes, and returns everything read until the far side's FIN. */
  async function roundTrip(port: number, msg: Buffer): Promise<Buffer> {
    const s: Socket = connect({ host: "127.0.0.1", port, allowHalfOpen: true });
    const chunks: Buffer[] = [];
    s.on("data", (d: Buffer) => chunks.push(d));
    await new Promise<void>((r) => s.once("connect", r));
    s.write(msg);
    s.end();
    await new Promise<void>((resolve, reject) => {
      s.once("end", resolve);
      s.once("error", reject);
    });
    s.destroy();
    return Buffer.concat(chunks);
  }

  for (const tls of [false, true]) {
    it(`${tls ? "nodetls" : "nodetcp"}: both hops carry bytes both ways and pass the FIN on`, async () => {
      const [entry, hop] = [await freePort(), await freePort()];
      const lo = (port: number) => ({ host: "127.0.0.1", port });
      await relay({ mode: tls ? "tls-server" : "tcp", forwards: [{ listen: lo(hop), connect: lo(echoPort) }], ...(tls ? { pki: { ...pki.server, caFile: pki.caFile } } : {}) });
      await relay({ mode: tls ? "tls-client" : "tcp", forwards: [{ listen: lo(entry), connect: lo(hop) }], ...(tls ? { pki: { ...pki.client, caFile: pki.caFile } } : {}) });
      const msg = Buffer.alloc(300_000, 7);
      const got = await roundTrip(entry, msg);
      // The echo ends only after our FIN arrived through both relays; "bye" follows the echo.
      expect(got.length).toBe(msg.length + 3);
      expect(got.subarray(0, msg.length).equals(msg)).toBe(true);
      expect(got.subarray(msg.length).toString()).toBe("bye");
    });
  }

  it("tls-server forwards only for a client with a certificate from its CA", async () => {
    const hop = await freePort();
    await relay({ mode: "tls-server", forwards: [{ listen: { host: "127.0.0.1", port: hop }, connect: { host: "127.0.0.1", port: echoPort } }], pki: { ...pki.server, caFile: pki.caFile } });
    /** What a TLS client that trusts the CA reads back for "ping" (the echo adds "bye" after our FIN) before the connection closes. */
    const echoed = async (withCert: boolean): Promise<string> => {
      const cert = withCert ? { cert: readFileSync(pki.client.certFile), key: readFileSync(pki.client.keyFile) } : {};
      const s = tlsConnect({ host: "127.0.0.1", port: hop, ca: readFileSync(pki.caFile), checkServerIdentity: () => undefined, ...cert });
      let got = "";
      s.on("data", (d: Buffer) => {
        got += d.toString();
        if (got === "ping") s.end();
      });
      s.on("error", () => undefined);
      s.once("secureConnect", () => s.write("ping"));
      await new Promise((r) => s.once("close", r));
      return got;
    };
    expect(await echoed(true)).toBe("pingbye");
    expect(await echoed(false)).toBe("");
  });

  it("exits 2 with the reason on a bad command line", async () => {
    const child = spawn(process.execPath, [RELAY, "tcp"], { stdio: ["ignore", "pipe", "pipe"] });
    let err = "";
    child.stderr!.on("data", (d: Buffer) => (err += d.toString()));
    const code = await new Promise((r) => child.once("exit", r));
    expect(code).toBe(2);
    expect(err).toBe("floor relay: at least one <listen>=<connect> forward is needed\n");
  });
});
