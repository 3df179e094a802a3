import { existsSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { makeNativeError } from "./errors.js";

/** Identity of a netns as the addon returns it. */
export interface RawIdentity {
  dev: bigint;
  ino: bigint;
}

/** Received datagram as the addon returns it (fds are owned by the caller). */
export interface RawDatagram {
  data: Buffer;
  fds: number[];
  truncated: boolean;
  controlTruncated: boolean;
}

/** Opaque uv_poll handle owned by the addon. */
export type Poller = { readonly __poller: unique symbol };

/** Opaque splice relay owned by the addon (native/src/splice.c). */
export type Splicer = { readonly __splicer: unique symbol };

/** Events of a splice relay's callback (first argument). */
export const SPLICE_A_TO_B_ENDED = 1;
export const SPLICE_B_TO_A_ENDED = 2;
export const SPLICE_COMPLETE = 3;
export const SPLICE_ERROR = 4;

/** Starts a kernel relay between two stream-socket fds; prefixes are bytes already read from one side. */
type SpliceStart = (
  fdA: number,
  fdB: number,
  prefixAtoB: Uint8Array,
  prefixBtoA: Uint8Array,
  /** Bytes asked of each direction's pipe; 0 = the kernel's default. */
  pipeSize: number,
  cb: (event: number, errno: number, aToB: number, bToA: number, what: string) => void,
) => Splicer;

/** The functions of native/build/Release/ambient_native.node (see native/src/*.c). */
export interface NativeBinding {
  init(makeError: typeof makeNativeError): void;
  netnsOpen(path: string): number;
  netnsCheck(fd: number): void;
  fdIdentity(fd: number): RawIdentity;
  threadNetnsIdentity(): RawIdentity;
  dupFd(fd: number): number;
  closeFd(fd: number): void;
  setThreadName(name: string): void;
  netnsCookieOf(netnsFd: number): bigint;
  netnsWriteSysctl(netnsFd: number, name: string, value: string): void;
  benchSetnsRoundTrip(netnsFd: number, count: number): void;
  createSocket(netnsFd: number, spec: object): number;
  originalDst(fd: number): { address: string; port: number; family: 4 | 6 };
  netnsCookie(fd: number): bigint;
  getSocketMark(fd: number): number;
  isListening(fd: number): boolean;
  seqListen(name: string, abstract: boolean, backlog: number, mode: number): number;
  seqConnect(name: string, abstract: boolean): number;
  seqAccept(fd: number): number;
  seqSend(fd: number, data: Uint8Array, passFd: number): boolean;
  seqRecv(fd: number, maxDatagram: number): RawDatagram | null | undefined;
  peerCred(fd: number): { pid: number; uid: number; gid: number };
  pollStart(fd: number, cb: (status: number, events: number) => void): Poller;
  pollUpdate(poller: Poller, events: number): void;
  pollRef(poller: Poller, ref: boolean): void;
  pollClose(poller: Poller): void;
  spliceStart: SpliceStart;
  /** As spliceStart, on fds the caller keeps owning: the relay never closes them. */
  spliceBorrow: SpliceStart;
  spliceStats(splicer: Splicer): { aToB: number; bToA: number; pipeBytes: number };
  spliceClose(splicer: Splicer, reset: boolean): void;
}

export const POLL_READABLE = 1;
export const POLL_WRITABLE = 2;

const ADDON = join("native", "build", "Release", "ambient_native.node");

// This file runs from src/native (vitest, tsx) and from dist/src/native (compiled); walk up to
// the first directory holding the built addon, then fall back to the working directory.
function locateAddon(): string {
  if (process.env.AMBIENT_NATIVE_ADDON) return process.env.AMBIENT_NATIVE_ADDON;
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 5; i++) {
    const candidate = join(dir, ADDON);
    if (existsSync(candidate)) return candidate;
    dir = dirname(dir);
  }
  const fromCwd = join(process.cwd(), ADDON);
  if (existsSync(fromCwd)) return fromCwd;
  throw new Error(
    `native addon ${ADDON} not found above ${dirname(fileURLToPath(import.meta.url))}: run \`npm run build:native\``,
  );
}

function load(): NativeBinding {
  const require = createRequire(import.meta.url);
  const binding = require(locateAddon()) as NativeBinding;
  binding.init(makeNativeError);
  return binding;
}

/** Loaded once per thread (the addon is context-aware: each worker_thread gets its own state). */
export const native: NativeBinding = load();
