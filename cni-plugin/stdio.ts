import { writeSync } from "node:fs";

// stdout and stderr written with write(2) straight on the descriptor. process.stdout on the
// runtime's pipe would build a net.Socket (loading node:net and the stream machinery, then
// closing the handle at exit) for one line. The runtime hands us blocking pipes; should a
// descriptor be non-blocking and full (EAGAIN), the rest of that descriptor's output goes
// through process.stdout/stderr, which queue it and flush before exit, so nothing is lost or
// reordered.

export type OutFd = 1 | 2;

const streamed = new Set<OutFd>();

function stream(fd: OutFd): NodeJS.WriteStream {
  return fd === 1 ? process.stdout : process.stderr;
}

export function writeOut(fd: OutFd, text: string): void {
  if (text === "") return;
  if (streamed.has(fd)) {
    stream(fd).write(text);
    return;
  }
  const bytes = Buffer.from(text, "utf8");
  let off = 0;
  while (off < bytes.length) {
    try {
      off += writeSync(fd, bytes, off, bytes.length - off);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === "EINTR") continue;
      if (code !== "EAGAIN") throw err;
      streamed.add(fd);
      stream(fd).write(bytes.subarray(off));
      return;
    }
  }
}
