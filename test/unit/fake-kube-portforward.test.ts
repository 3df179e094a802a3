import { createServer, connect, type Server, type Socket } from "node:net";
import { PassThrough } from "node:stream";
import { PortForward } from "@kubernetes/client-node";
import { afterEach, describe, expect, it } from "vitest";
import { FakeKubeServer, kubeConfigFor } from "../harness/fake-kube/index.js";

// pods/portforward of the fake API server, driven by @kubernetes/client-node's PortForward (the
// client ambientctl uses): WebSocket upgrade with the channel protocol, the port preamble on
// both channels, bytes both ways, RBAC record, and the refusals a real API server gives.

describe("fake-kube pods/portforward", () => {
  let kube: FakeKubeServer | undefined;
  let echo: Server | undefined;
  afterEach(async () => {
    await kube?.stop();
    await new Promise<void>((r) => (echo ? echo.close(() => r()) : r()));
  });

  async function setup(): Promise<{ port: number }> {
    echo = createServer((s) => s.on("data", (d: Buffer) => s.write(Buffer.concat([Buffer.from("echo:"), d]))));
    await new Promise<void>((r) => echo!.listen(0, "127.0.0.1", () => r()));
    const port = (echo.address() as { port: number }).port;
    kube = await FakeKubeServer.start({
      portForward: async (_ns, _pod, p) => {
        const s: Socket = connect(p, "127.0.0.1");
        await new Promise<void>((resolve, reject) => s.once("connect", resolve).once("error", reject));
        return s;
      },
    });
    kube.store.create("pods", { metadata: { name: "zt", namespace: "istio-system" }, spec: { nodeName: "n1", containers: [{ name: "c", image: "x" }] } });
    return { port };
  }

  it("relays bytes both ways to the pod's port and records create on pods/portforward", async () => {
    const { port } = await setup();
    const out = new PassThrough();
    const input = new PassThrough();
    const got: Buffer[] = [];
    out.on("data", (d: Buffer) => got.push(d));
    const ws = await new PortForward(kubeConfigFor({ url: kube!.url, token: kube!.token })).portForward("istio-system", "zt", [port], out, null, input);
    input.write("hello");
    await expect.poll(() => Buffer.concat(got).toString()).toBe("echo:hello");
    input.write("again");
    await expect.poll(() => Buffer.concat(got).toString()).toBe("echo:helloecho:again");
    (typeof ws === "function" ? ws() : ws)?.close();
    expect(kube!.requests.filter((r) => r.subresource === "portforward")).toEqual([expect.objectContaining({ verb: "create", resource: "pods", namespace: "istio-system", name: "zt", query: { ports: String(port) } })]);
  });

  it("refuses what the API server refuses: an unknown pod (404), a wrong token (401); a port nobody serves comes back on the error channel", async () => {
    const { port } = await setup();
    const pf = (token: string | undefined): PortForward => new PortForward(kubeConfigFor({ url: kube!.url, token }));
    await expect(pf(kube!.token).portForward("istio-system", "nope", [port], new PassThrough(), null, new PassThrough())).rejects.toThrow(/404/);
    await expect(pf("wrong").portForward("istio-system", "zt", [port], new PassThrough(), null, new PassThrough())).rejects.toThrow(/401/);
    const err = new PassThrough();
    const errText: Buffer[] = [];
    err.on("data", (d: Buffer) => errText.push(d));
    // Port 1 on loopback: the dial is refused, which the server reports on channel 1.
    await pf(kube!.token).portForward("istio-system", "zt", [1], new PassThrough(), err, new PassThrough());
    await expect.poll(() => Buffer.concat(errText).toString()).toMatch(/error forwarding port 1 to pod zt/);
  });
});
