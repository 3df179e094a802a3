import { describe, expect, it } from "vitest";
import { AmbientError } from "../../src/shared/errors.js";
import { makeNativeError, NativeError } from "../../src/native/errors.js";

describe("NativeError messages", () => {
  it("setns EPERM tells the user which capabilities are missing", () => {
    const e = makeNativeError("setns into netns fd 12", 1, "setns", "Operation not permitted");
    expect(e).toBeInstanceOf(NativeError);
    expect(e).toBeInstanceOf(AmbientError);
    expect(e.name).toBe("NativeError");
    expect(e).toMatchObject({ code: "EPERM", errno: 1, syscall: "setns" });
    expect(e.message).toBe("setns into netns fd 12: Operation not permitted — ztunnel needs CAP_SYS_ADMIN and CAP_NET_ADMIN");
  });

  it("TCP bind conflicts keep the conventional message; unix ones explain stale files", () => {
    expect(makeNativeError("bind 10.0.0.1:15008", 98, "bind", "Address already in use").message).toBe(
      "bind 10.0.0.1:15008: Address already in use",
    );
    expect(makeNativeError("listen on unix seqpacket socket /run/x.sock", 98, "bind", "Address already in use").message).toMatch(
      /— another process listens there, or a stale socket file was left behind/,
    );
  });

  it("conditions detected by the addon itself carry no strerror", () => {
    const e = makeNativeError("fd 7 is a socket, not a network namespace", 22, "ioctl", "");
    expect(e.message).toBe("fd 7 is a socket, not a network namespace");
    expect(e.code).toBe("EINVAL");
  });

  it("hints are per syscall, and generic ones apply to any syscall", () => {
    expect(makeNativeError("open netns /var/run/netns/x", 2, "open", "No such file or directory").message).toMatch(/is the pod gone\?/);
    expect(makeNativeError("getsockopt SO_ORIGINAL_DST (IPv4) fd 3", 2, "getsockopt", "No such file or directory").message).toMatch(
      /no conntrack entry/,
    );
    expect(makeNativeError("socket(AF_INET, SOCK_STREAM)", 24, "socket", "Too many open files").message).toMatch(/ulimit -n/);
    expect(makeNativeError("setsockopt SO_MARK=0x539", 1, "setsockopt", "Operation not permitted").message).toMatch(/CAP_NET_ADMIN/);
    expect(makeNativeError("close fd 3", 9, "close", "Bad file descriptor").message).toBe("close fd 3: Bad file descriptor");
  });

  it("unknown errno values still get a code", () => {
    expect(makeNativeError("x", 200, "y", "Unknown error 200").code).toBe("ERRNO_200");
  });
});
