import { native } from "./binding.js";
import { NativeError } from "./errors.js";

/** A netns is identified by the (st_dev, st_ino) of its nsfs file. */
export interface NetnsIdentity {
  dev: bigint;
  ino: bigint;
}

function closedError(what: string): NativeError {
  return new NativeError("EBADF", `${what}: netns handle is closed`, 9, "netns");
}

/**
 * An open fd of a network namespace (O_RDONLY|O_CLOEXEC). The handle owns the fd: close() it
 * exactly once; every use afterwards throws instead of touching a reused fd number.
 */
export class NetnsHandle {
  #fd: number;

  private constructor(fd: number) {
    this.#fd = fd;
  }

  /** Opens a netns file (e.g. /var/run/netns/<name>, /proc/<pid>/ns/net); checks it is a netns. */
  static open(path: string): NetnsHandle {
    return new NetnsHandle(native.netnsOpen(path));
  }

  static openPid(pid: number): NetnsHandle {
    if (!Number.isInteger(pid) || pid <= 0) throw new TypeError(`pid must be a positive integer, got ${pid}`);
    return NetnsHandle.open(`/proc/${pid}/ns/net`);
  }

  /**
   * Takes ownership of an fd (e.g. one received over SCM_RIGHTS) after checking it is a netns.
   * If the check fails the fd is NOT closed: the caller still owns it and decides.
   */
  static fromFd(fd: number): NetnsHandle {
    if (!Number.isInteger(fd) || fd < 0) throw new TypeError(`fd must be a non-negative integer, got ${fd}`);
    native.netnsCheck(fd);
    return new NetnsHandle(fd);
  }

  get fd(): number {
    return this.#fd;
  }

  get closed(): boolean {
    return this.#fd < 0;
  }

  /** The fd for a native call; throws once closed. */
  usableFd(what: string): number {
    if (this.#fd < 0) throw closedError(what);
    return this.#fd;
  }

  identity(): NetnsIdentity {
    const { dev, ino } = native.fdIdentity(this.usableFd("identity"));
    return { dev, ino };
  }

  /** An independent handle on the same netns (F_DUPFD_CLOEXEC), e.g. one per worker. */
  dup(): NetnsHandle {
    return new NetnsHandle(native.dupFd(this.usableFd("dup")));
  }

  close(): void {
    if (this.#fd < 0) return;
    const fd = this.#fd;
    this.#fd = -1;
    native.closeFd(fd);
  }
}

/** Identity of the calling thread's current netns (/proc/thread-self/ns/net). */
export function currentThreadNetns(): NetnsIdentity {
  const { dev, ino } = native.threadNetnsIdentity();
  return { dev, ino };
}

export function sameNetns(a: NetnsIdentity, b: NetnsIdentity): boolean {
  return a.dev === b.dev && a.ino === b.ino;
}
