import type { Socket } from "node:net";
import type { SocketFactory } from "../../sockets/socket-factory.js";
import { formatHostPort } from "../state/ip.js";
import { ProxyError, upstreamConnectError } from "./errors.js";
import { PROXY_KEEPALIVE } from "./h2-options.js";
import type { HbonePool, HboneRequest } from "./hbone-client.js";
import { startPlaintextRelay, unmetered, type PlaintextRelayChoice, type RelayUsed } from "./plain-relay.js";
import { Relay, type RelayOptions, type RelayResult } from "./relay.js";

// The two outbound paths for an accepted (captured) connection: tunnel it over HBONE, or pass
// it through as plain TCP. Until the upstream is ready the downstream is paused, so the kernel
// holds the client's early bytes instead of our memory. A failure resets the client
// connection: a clean FIN would look like an empty but successful exchange.

export type OutboundResult =
  | { readonly ok: true; readonly result: RelayResult; readonly connectionId?: number; readonly relay?: RelayUsed }
  | { readonly ok: false; readonly error: ProxyError };

export async function proxyOutboundHbone(
  downstream: Socket,
  pool: HbonePool,
  req: HboneRequest,
  relayOpts?: RelayOptions,
  onRelay?: (relay: Relay) => void,
): Promise<OutboundResult> {
  downstream.pause();
  downstream.on("error", ignoreError);
  try {
    const { stream, connectionId } = await pool.connect(req);
    if (downstream.destroyed) {
      stream.close();
      return { ok: false, error: new ProxyError("HBONE_STREAM_RESET", "client left before the tunnel was up") };
    }
    const relay = new Relay(downstream, stream, relayOpts);
    onRelay?.(relay);
    downstream.resume();
    return { ok: true, result: await relay.done, connectionId };
  } catch (err) {
    downstream.resetAndDestroy();
    return { ok: false, error: err instanceof ProxyError ? err : new ProxyError("HBONE_HANDSHAKE_FAILED", String(err), { cause: err }) };
  }
}

export async function proxyPassthrough(
  downstream: Socket,
  factory: SocketFactory,
  target: { ip: string; port: number },
  relayOpts?: RelayOptions,
  choice: PlaintextRelayChoice = unmetered("js"),
): Promise<OutboundResult> {
  downstream.pause();
  downstream.on("error", ignoreError);
  const upstream = factory.connectTcp({ host: target.ip, port: target.port, noDelay: true, keepAlive: PROXY_KEEPALIVE });
  const err = await new Promise<Error | undefined>((resolve) => {
    upstream.once("connect", () => resolve(undefined));
    upstream.once("error", resolve);
  });
  if (err !== undefined) {
    upstream.destroy();
    downstream.resetAndDestroy();
    return { ok: false, error: upstreamConnectError(err, formatHostPort(target.ip, target.port)) };
  }
  const relay = startPlaintextRelay(choice, downstream, upstream, relayOpts);
  return { ok: true, result: await relay.done, relay: relay.relay };
}

/** Errors of a downstream before its relay takes it (the relay reports its own). */
function ignoreError(): void {}
