// Parses the output of `ss -tanemoi` (iproute2) into one record per TCP socket: the kernel's own
// view of a pod's sockets (state, queues, mark, timers, TCP_INFO rtt and retransmits, skmem).
// ss prints a socket as one line (state, queues, addresses, -e/-o details) followed by
// indented lines (-m skmem, -i TCP_INFO). Unknown tokens are kept in `extra`, never fatal:
// iproute2 versions add fields over time.

export interface SsAddress {
  /** IP without brackets or interface scope; "*" for a wildcard. */
  readonly address: string;
  /** Port, or undefined for "*". */
  readonly port: number | undefined;
  /** Interface after `%` (e.g. "lo"), when ss printed one. */
  readonly scope?: string;
}

export interface KernelSocket {
  readonly state: string;
  /** Listening: accept-queue length; otherwise bytes not yet read by the application. */
  readonly recvQ: number;
  /** Listening: backlog; otherwise bytes not yet acknowledged by the peer. */
  readonly sendQ: number;
  readonly local: SsAddress;
  readonly peer: SsAddress;
  /** SO_MARK (fwmark); undefined when not set. */
  readonly mark?: number;
  readonly inode?: number;
  readonly uid?: number;
  /** `timer:(name,expires,retransmits)`. */
  readonly timer?: { readonly name: string; readonly expires: string; readonly retransmits: number };
  /** TCP_INFO smoothed RTT and variance, ms. */
  readonly rttMs?: number;
  readonly rttVarMs?: number;
  /** TCP_INFO `retrans:<current>/<total>`: unacked retransmitted segments now, and in total. */
  readonly retransmits?: number;
  readonly totalRetransmits?: number;
  readonly cwnd?: number;
  readonly bytesSent?: number;
  readonly bytesReceived?: number;
  readonly bytesAcked?: number;
  readonly notSent?: number;
  /** `skmem:(r..,rb..,t..,tb..,…)` socket memory counters. */
  readonly skmem?: Readonly<Record<string, number>>;
  /** Other `key:value` tokens and flags, as printed. */
  readonly extra: Readonly<Record<string, string>>;
}

/** Every socket in `text`; malformed lines are skipped and reported in `skipped`. */
export function parseSs(text: string): { sockets: KernelSocket[]; skipped: string[] } {
  const sockets: KernelSocket[] = [];
  const skipped: string[] = [];
  let current: Mutable | undefined;
  for (const raw of text.split("\n")) {
    if (raw.trim() === "") continue;
    if (/^\s/.test(raw)) {
      // Details of the socket above (-m, -i).
      if (current !== undefined) addTokens(current, tokenize(raw.trim()));
      continue;
    }
    if (raw.startsWith("State ")) continue;
    const parsed = mainLine(raw);
    if (parsed === undefined) {
      skipped.push(raw);
      current = undefined;
      continue;
    }
    current = parsed;
    sockets.push(parsed);
  }
  return { sockets, skipped };
}

type Mutable = { -readonly [K in keyof KernelSocket]: KernelSocket[K] } & { extra: Record<string, string> };

function mainLine(line: string): Mutable | undefined {
  const fields = line.trim().split(/\s+/);
  const [state, recvQ, sendQ, local, peer, ...rest] = fields;
  if (state === undefined || recvQ === undefined || sendQ === undefined || local === undefined || peer === undefined) return undefined;
  const rq = Number(recvQ);
  const sq = Number(sendQ);
  const l = parseAddress(local);
  const p = parseAddress(peer);
  if (!Number.isInteger(rq) || !Number.isInteger(sq) || l === undefined || p === undefined) return undefined;
  const s: Mutable = { state, recvQ: rq, sendQ: sq, local: l, peer: p, extra: {} };
  addTokens(s, tokenize(rest.join(" ")));
  return s;
}

/** "10.0.0.1:80", "[fd00::1]:80", "*:80", "127.0.0.53%lo:53", "0.0.0.0:*", "*:*". */
export function parseAddress(text: string): SsAddress | undefined {
  const colon = text.lastIndexOf(":");
  if (colon <= 0) return undefined;
  let host = text.slice(0, colon);
  const portText = text.slice(colon + 1);
  const port = portText === "*" ? undefined : Number(portText);
  if (port !== undefined && (!Number.isInteger(port) || port < 0 || port > 65535)) return undefined;
  if (host.startsWith("[") && host.endsWith("]")) host = host.slice(1, -1);
  let scope: string | undefined;
  const pct = host.indexOf("%");
  if (pct >= 0) {
    scope = host.slice(pct + 1);
    host = host.slice(0, pct);
  }
  if (host === "") return undefined;
  return scope === undefined ? { address: host, port } : { address: host, port, scope };
}

/** Splits on spaces outside parentheses: `timer:(on,2ms,0)` stays one token. */
function tokenize(text: string): string[] {
  const out: string[] = [];
  let depth = 0;
  let cur = "";
  for (const ch of text) {
    if (ch === "(") depth++;
    if (ch === ")") depth = Math.max(0, depth - 1);
    if (/\s/.test(ch) && depth === 0) {
      if (cur !== "") out.push(cur);
      cur = "";
    } else cur += ch;
  }
  if (cur !== "") out.push(cur);
  return out;
}

const NUMERIC: Readonly<Record<string, "cwnd" | "bytesSent" | "bytesReceived" | "bytesAcked" | "notSent" | "inode" | "uid">> = {
  cwnd: "cwnd",
  bytes_sent: "bytesSent",
  bytes_received: "bytesReceived",
  bytes_acked: "bytesAcked",
  notsent: "notSent",
  ino: "inode",
  uid: "uid",
};

function addTokens(s: Mutable, tokens: readonly string[]): void {
  for (let i = 0; i < tokens.length; i++) {
    const t = tokens[i] ?? "";
    const c = t.indexOf(":");
    if (c < 0) {
      // Bare flags (ts, sack, cubic, app_limited, <->) and "send 1bps"-style pairs.
      const next = tokens[i + 1];
      if ((t === "send" || t === "pacing_rate" || t === "delivery_rate") && next !== undefined) {
        s.extra[t] = next;
        i++;
      } else s.extra[t] = "";
      continue;
    }
    const key = t.slice(0, c);
    const value = t.slice(c + 1);
    const num = NUMERIC[key];
    if (num !== undefined && /^\d+$/.test(value)) {
      s[num] = Number(value);
      continue;
    }
    switch (key) {
      case "fwmark": {
        const m = Number(value);
        if (Number.isInteger(m)) s.mark = m;
        else s.extra[key] = value;
        break;
      }
      case "rtt": {
        const [rtt, v] = value.split("/");
        if (rtt !== undefined && Number.isFinite(Number(rtt))) s.rttMs = Number(rtt);
        if (v !== undefined && Number.isFinite(Number(v))) s.rttVarMs = Number(v);
        break;
      }
      case "retrans": {
        const [now, total] = value.split("/");
        if (now !== undefined && /^\d+$/.test(now)) s.retransmits = Number(now);
        if (total !== undefined && /^\d+$/.test(total)) s.totalRetransmits = Number(total);
        break;
      }
      case "timer": {
        const inner = /^\((\w+),([^,]*),(\d+)\)$/.exec(value);
        if (inner !== null) s.timer = { name: inner[1] ?? "", expires: inner[2] ?? "", retransmits: Number(inner[3]) };
        else s.extra[key] = value;
        break;
      }
      case "skmem": {
        const m: Record<string, number> = {};
        for (const part of value.replace(/^\(|\)$/g, "").split(",")) {
          const kv = /^([a-z]+)(\d+)$/.exec(part);
          if (kv !== null) m[kv[1] ?? ""] = Number(kv[2]);
        }
        s.skmem = m;
        break;
      }
      default:
        s.extra[key] = value;
    }
  }
}
