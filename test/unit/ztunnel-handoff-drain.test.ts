import type { Socket } from "node:net";
import { connect as tlsConnect } from "node:tls";
import { describe, expect, it } from "vitest";
import { clientTlsOptions } from "../../src/ztunnel/tls/peer.js";
import { CLIENT_ID, SERVER_ID, useHboneEnvs } from "../fixtures/ztunnel-hbone-env.js";
import { loopbackScope } from "../fixtures/loopback.js";
import { certFor } from "../fixtures/ztunnel-pki.js";

// A connection another worker accepted and handed over (worker/hbone-balance.ts) is served like one
// this worker accepted, which includes not being served once the server drains: a listener
// that closed takes no new connection, and a handed-over one is no exception.

describe("HBONE server: handed-over connections", () => {
  const newEnv = useHboneEnvs();
  const { track, acceptOne } = loopbackScope();

  /** A TLS client of the HBONE server whose TCP connection another listener accepted (as a peer worker would). */
  async function handedOver(): Promise<{ sock: Socket; outcome: Promise<"handshake" | "closed"> }> {
    const l = await acceptOne();
    const client = tlsConnect({ host: "127.0.0.1", port: l.port, ...clientTlsOptions(await certFor(CLIENT_ID), [SERVER_ID]) });
    track(client);
    client.on("error", () => undefined);
    const outcome = new Promise<"handshake" | "closed">((resolve) => {
      client.once("secureConnect", () => resolve("handshake"));
      client.once("close", () => resolve("closed"));
    });
    return { sock: await l.accepted, outcome };
  }

  it("serves one while it accepts", async () => {
    const env = await newEnv();
    const { sock, outcome } = await handedOver();
    let released = 0;
    env.server.adopt(sock, () => released++);
    expect(await outcome).toBe("handshake");
    expect(env.server.stats.connections).toBe(1);
    expect(released).toBe(0);
  });

  it("refuses one once draining: closed without a handshake, and uncounted from the balance", async () => {
    const env = await newEnv();
    const { sock, outcome } = await handedOver();
    await env.server.drain();
    let released = 0;
    const closed = new Promise((r) => sock.once("close", r));
    env.server.adopt(sock, () => released++);
    expect(await outcome).toBe("closed");
    await closed;
    expect(released).toBe(1);
    expect(env.server.stats.connections).toBe(0);
  });
});
