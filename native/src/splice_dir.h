/* One direction of a splice relay: its pipe, the prefix still to send, and the step that moves
 * bytes source -> pipe -> destination (splice_dir.c). No Node-API, no libuv: syscalls only. */
#ifndef AMBIENT_NATIVE_SPLICE_DIR_H
#define AMBIENT_NATIVE_SPLICE_DIR_H

#include <stddef.h>
#include <stdint.h>

typedef struct direction {
  int pipe_r, pipe_w;
  size_t pipe_cap, in_pipe;
  char *prefix; /* bytes the JS socket had read before the hand-over */
  size_t prefix_len, prefix_off;
  uint64_t bytes;
  int eof, done, want_read, want_write;
} direction_t;

/* Opens the direction's pipe (non-blocking, close-on-exec) and asks for size bytes (0: the
 * kernel's default). 0 or a negative errno. */
int dir_make_pipe(direction_t *d, int size);
/* Copies bytes to send before anything spliced. 0 or -ENOMEM. */
int dir_copy_prefix(direction_t *d, const void *data, size_t len);
/* Moves what it can from src to dst. Returns 0, or a negative errno with *what naming the failed
 * operation. Sets want_read / want_write for what it waits on; done once EOF was passed on. */
int dir_step(direction_t *d, int src, int dst, const char **what);

#endif
