import { getSystemErrorMap, getSystemErrorName } from "node:util";
import { AmbientError } from "../shared/errors.js";

/**
 * An OS-level failure in the native layer: which syscall, which errno, on what (context), and
 * when we know one, what the user can do about it.
 */
export class NativeError extends AmbientError {
  readonly errno: number;
  readonly syscall: string;

  constructor(code: string, message: string, errno: number, syscall: string, options?: { cause?: unknown }) {
    super(code, message, options);
    this.errno = errno;
    this.syscall = syscall;
  }
}

// (syscall, code) -> advice. Keep it to conditions a user can fix.
const HINTS: Array<{ syscall?: string; code: string; hint: string }> = [
  { syscall: "setns", code: "EPERM", hint: "ztunnel needs CAP_SYS_ADMIN and CAP_NET_ADMIN" },
  { syscall: "setns", code: "EINVAL", hint: "the fd is not a network namespace" },
  { syscall: "setsockopt", code: "EPERM", hint: "socket marks and transparent sockets need CAP_NET_ADMIN" },
  { syscall: "open", code: "ENOENT", hint: "the netns does not exist (is the pod gone?)" },
  { syscall: "sysctl", code: "ENOENT", hint: "this kernel lacks the sysctl (net.ipv4.tcp_migrate_req needs Linux >= 5.14)" },
  { syscall: "sysctl", code: "EPERM", hint: "writing a netns' sysctls needs CAP_NET_ADMIN in its owning user namespace" },
  { syscall: "open", code: "EACCES", hint: "opening another process's netns needs root or CAP_SYS_PTRACE" },
  {
    syscall: "bind",
    code: "EADDRNOTAVAIL",
    hint: "the address is not assigned in this netns (binding a foreign address needs transparent or freebind)",
  },
  {
    syscall: "getsockopt",
    code: "ENOENT",
    hint: "no conntrack entry: the connection was not redirected by iptables NAT",
  },
  { syscall: "getsockopt", code: "ENOPROTOOPT", hint: "this kernel lacks the option (SO_NETNS_COOKIE needs Linux >= 5.14)" },
  { syscall: "connect", code: "ENOENT", hint: "nothing listens at that unix socket path (is the server running?)" },
  { syscall: "connect", code: "ECONNREFUSED", hint: "nothing listens at that unix socket (is the server running?)" },
  { code: "EMFILE", hint: "too many open files in this process: raise the limit (ulimit -n) or look for an fd leak" },
  { code: "ENFILE", hint: "the system-wide file table is full" },
];

const UNIX_IN_USE_HINT =
  "another process listens there, or a stale socket file was left behind: remove it if no process owns it";

function hintFor(context: string, code: string, syscall: string): string | undefined {
  if (syscall === "bind" && code === "EADDRINUSE") {
    // TCP/UDP binds: the message alone is the conventional, sufficient one.
    return context.startsWith("listen on unix") ? UNIX_IN_USE_HINT : undefined;
  }
  return HINTS.find((x) => x.code === code && (x.syscall === undefined || x.syscall === syscall))?.hint;
}

/** strerror(errno) as libuv words it ("Connection reset by peer"); errno is positive. */
export function errnoText(errno: number): string {
  return getSystemErrorMap().get(-Math.abs(errno))?.[1] ?? `errno ${Math.abs(errno)}`;
}

function errnoName(errno: number): string {
  try {
    const name = getSystemErrorName(-errno);
    if (/^E[A-Z0-9]+$/.test(name)) return name;
  } catch {
    // Not an errno Node knows.
  }
  return `ERRNO_${errno}`;
}

/**
 * Factory the addon calls to build its errors (registered at load time):
 * "<context>: <strerror>[ — <hint>]" (strerror is empty for conditions the addon detects itself).
 */
export function makeNativeError(context: string, errno: number, syscall: string, strerror: string): NativeError {
  const code = errnoName(errno);
  const hint = hintFor(context, code, syscall);
  const base = strerror === "" ? context : `${context}: ${strerror}`;
  const message = hint ? `${base} — ${hint}` : base;
  return new NativeError(code, message, errno, syscall);
}
