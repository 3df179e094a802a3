import { FRAME_HEADER_LEN, FrameType, writeFrameHeader } from "./frames.js";

// Framing of queued stream bytes as one DATA frame. A small frame leaves as one buffer, header
// and payload copied together: Node's TLS socket copies a write of several buffers into one
// before encrypting anyway, and one buffer takes the socket's single-write path instead of its
// writev path (measured on the 1 KiB request/response bench row). Larger frames go out as
// views of what the caller wrote, with no copy in JS.

/** Payloads up to this size are copied into one buffer with their header (one TLS record). */
export const COPY_FRAME_MAX = 16 * 1024;

/**
 * Takes `n` bytes from the front of `queue` (which holds at least that many) and hands one
 * DATA frame carrying them to `write`, as one buffer or as the header and the payload views.
 */
export function writeDataFrame(queue: Buffer[], n: number, flags: number, streamId: number, write: (b: Buffer) => void): void {
  if (n <= COPY_FRAME_MAX) {
    const frame = Buffer.allocUnsafe(FRAME_HEADER_LEN + n);
    writeFrameHeader(frame, 0, n, FrameType.DATA, flags, streamId);
    let off = FRAME_HEADER_LEN;
    while (off < frame.length) {
      const head = queue[0];
      const k = Math.min(head.length, frame.length - off);
      head.copy(frame, off, 0, k);
      off += k;
      if (k === head.length) queue.shift();
      else queue[0] = head.subarray(k);
    }
    write(frame);
    return;
  }
  const header = Buffer.allocUnsafe(FRAME_HEADER_LEN);
  writeFrameHeader(header, 0, n, FrameType.DATA, flags, streamId);
  write(header);
  let left = n;
  while (left > 0) {
    const head = queue[0];
    if (head.length <= left) {
      queue.shift();
      write(head);
      left -= head.length;
    } else {
      write(head.subarray(0, left));
      queue[0] = head.subarray(left);
      left = 0;
    }
  }
}
