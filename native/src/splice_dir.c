/* Moving bytes in one direction of a splice relay: prefix first (send), then splice() from the
 * source socket into the pipe and from the pipe into the destination socket. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "splice_dir.h"

#define STEP_BUDGET 16 /* pipe round trips per direction per wake-up: fairness */

int dir_make_pipe(direction_t *d, int size) {
  int p[2];
  if (pipe2(p, O_CLOEXEC | O_NONBLOCK) != 0) return -errno;
  d->pipe_r = p[0];
  d->pipe_w = p[1];
  /* Refused (past pipe-max-size, or the user is over pipe-user-pages-soft/hard): the pipe keeps
   * what the kernel gave it, and the step below works with any capacity. */
  if (size > 0) (void)fcntl(p[1], F_SETPIPE_SZ, size);
  int cap = fcntl(p[1], F_GETPIPE_SZ);
  d->pipe_cap = cap > 0 ? (size_t)cap : 65536;
  return 0;
}

int dir_copy_prefix(direction_t *d, const void *data, size_t len) {
  if (len == 0) return 0;
  d->prefix = malloc(len);
  if (d->prefix == NULL) return -ENOMEM;
  memcpy(d->prefix, data, len);
  d->prefix_len = len;
  return 0;
}

/* Moves what it can in one direction. Returns 0, or a negative errno with *what naming the
 * failed operation. Sets want_read / want_write for what it waits on. */
int dir_step(direction_t *d, int src, int dst, const char **what) {
  d->want_read = d->want_write = 0;
  if (d->done) return 0;
  for (int budget = STEP_BUDGET; budget > 0; budget--) {
    if (d->prefix_off < d->prefix_len) {
      ssize_t n = send(dst, d->prefix + d->prefix_off, d->prefix_len - d->prefix_off, MSG_NOSIGNAL | MSG_DONTWAIT);
      if (n < 0) {
        if (errno == EINTR) continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
          d->want_write = 1;
          return 0;
        }
        *what = "send";
        return -errno;
      }
      d->prefix_off += (size_t)n;
      d->bytes += (uint64_t)n;
      continue;
    }
    int read_blocked = d->eof;
    if (!d->eof) {
      if (d->in_pipe < d->pipe_cap) {
        ssize_t n = splice(src, NULL, d->pipe_w, NULL, d->pipe_cap - d->in_pipe, SPLICE_F_NONBLOCK | SPLICE_F_MOVE);
        if (n > 0) d->in_pipe += (size_t)n;
        else if (n == 0) d->eof = 1;
        else if (errno == EAGAIN || errno == EWOULDBLOCK) read_blocked = 1; /* socket empty, or pipe slots full */
        else if (errno == EINTR) continue;
        else {
          *what = "splice from socket";
          return -errno;
        }
      } else {
        read_blocked = 1;
      }
    }
    if (d->in_pipe > 0) {
      ssize_t n = splice(d->pipe_r, NULL, dst, NULL, d->in_pipe, SPLICE_F_NONBLOCK | SPLICE_F_MOVE);
      if (n > 0) {
        d->in_pipe -= (size_t)n;
        d->bytes += (uint64_t)n;
      } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
        /* The source is not read again before the pipe drains: no busy loop on a full pipe. */
        d->want_write = 1;
        return 0;
      } else if (n < 0 && errno == EINTR) {
        continue;
      } else {
        *what = "splice to socket";
        return n == 0 ? -EPIPE : -errno;
      }
    }
    if (d->eof && d->in_pipe == 0) {
      if (shutdown(dst, SHUT_WR) != 0 && errno != ENOTCONN) {
        *what = "shutdown";
        return -errno;
      }
      d->done = 1;
      return 0;
    }
    if (read_blocked && d->in_pipe == 0) {
      d->want_read = 1;
      return 0;
    }
  }
  /* Budget spent: come back on the next loop turn (readiness is level-triggered). */
  d->want_read = !d->eof;
  d->want_write = d->in_pipe > 0;
  return 0;
}
