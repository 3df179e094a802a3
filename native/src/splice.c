/* Kernel-side relay of plaintext TCP between two sockets: splice() through one pipe per
 * direction, driven by the environment's libuv loop (one uv_poll_t per socket), so bytes never
 * enter user space. Half-close: a direction whose source reached EOF shuts down the write side
 * of its destination once its pipe is empty; the other direction continues. Backpressure: a
 * destination that says EAGAIN is waited on for writability and its source is not read until
 * the pipe has drained (the kernel's socket buffers hold the rest). A relay started with
 * spliceStart owns both fds: it closes them when it completes, fails (with RST to both peers) or
 * is closed. One started with spliceBorrow relays on fds another handle keeps (a parked Node
 * socket): it only stops polling them, arming SO_LINGER 0 first when the peers must get RST,
 * and the owner closes them after the relay stopped. JS hears of each direction's end,
 * completion and failure through one callback. */
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

#include "napi_helpers.h"
#include "parts.h"
#include "splice_dir.h"
#include "state.h"

static const napi_type_tag SPLICER_TAG = {0x616d6269656e7453ULL, 0x706c696365720001ULL};

/* Events the callback receives as its first argument. */
#define SP_EV_A_TO_B_ENDED 1 /* a reached EOF and b's write side was shut down */
#define SP_EV_B_TO_A_ENDED 2
#define SP_EV_COMPLETE 3 /* both directions ended; fds closed */
#define SP_EV_ERROR 4    /* a syscall failed (errno, what); both peers reset, fds closed */

struct splicer;
typedef struct end {
  uv_poll_t handle;
  struct splicer *sp;
  int fd, events;
} end_t;

typedef struct splicer {
  end_t end[2];       /* 0 = a, 1 = b */
  direction_t dir[2]; /* 0 = a -> b, 1 = b -> a */
  addon_state *st;
  napi_env env;
  napi_ref cb;
  napi_async_context actx;
  int closing, open_handles, in_callback;
  int owns_fds; /* spliceStart: closed here; spliceBorrow: the caller closes them after us */
  int js_alive; /* the external JS holds; freed only when it and both handles are gone */
  struct splicer *prev, *next;
} splicer_t;

static void unlink_splicer(addon_state *st, splicer_t *sp) {
  if (sp->prev) sp->prev->next = sp->next;
  else st->splicers = sp->next;
  if (sp->next) sp->next->prev = sp->prev;
  sp->prev = sp->next = NULL;
}

static void maybe_free(splicer_t *sp) {
  if (sp->open_handles > 0 || sp->js_alive) return;
  for (int i = 0; i < 2; i++) free(sp->dir[i].prefix);
  free(sp);
}

static void on_end_closed(uv_handle_t *h) {
  end_t *e = (end_t *)h->data;
  splicer_t *sp = e->sp;
  addon_state *st = sp->st;
  st->pending_handles--;
  sp->open_handles--;
  maybe_free(sp);
  state_release_if_idle(st);
}

static void finalize_external(napi_env env, void *data, void *hint) {
  splicer_t *sp = (splicer_t *)data;
  sp->js_alive = 0;
  maybe_free(sp);
}

/* Stops polling (synchronously) and only then closes fds and pipes. reset: SO_LINGER 0, so each
 * peer gets RST instead of FIN. No Node-API calls (used by env teardown). */
static void close_splicer(splicer_t *sp, int reset) {
  if (sp->closing) return;
  sp->closing = 1;
  unlink_splicer(sp->st, sp);
  for (int i = 0; i < 2; i++) {
    end_t *e = &sp->end[i];
    uv_close((uv_handle_t *)&e->handle, on_end_closed);
    if (reset && e->fd >= 0) {
      struct linger lg = {1, 0};
      (void)setsockopt(e->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
    }
    if (sp->owns_fds) close(e->fd);
    e->fd = -1;
    direction_t *d = &sp->dir[i];
    close(d->pipe_r);
    close(d->pipe_w);
    d->pipe_r = d->pipe_w = -1;
  }
}

/* Drops the JS callback; only while the env is alive. */
static void release_js(splicer_t *sp) {
  if (sp->cb != NULL) (void)napi_delete_reference(sp->env, sp->cb);
  if (sp->actx != NULL) (void)napi_async_destroy(sp->env, sp->actx);
  sp->cb = NULL;
  sp->actx = NULL;
}

static void report_uncaught(napi_env env) {
  bool pending = false;
  napi_value err;
  if (napi_is_exception_pending(env, &pending) != napi_ok || !pending) return;
  if (napi_get_and_clear_last_exception(env, &err) == napi_ok) (void)napi_fatal_exception(env, err);
}

/* callback(event, errno, bytesAtoB, bytesBtoA, what) */
static void emit(splicer_t *sp, int event, int err, const char *what) {
  napi_env env = sp->env;
  if (sp->cb == NULL) return;
  napi_handle_scope scope;
  if (napi_open_handle_scope(env, &scope) != napi_ok) return;
  napi_value cb, recv, argv[5], result;
  if (napi_get_reference_value(env, sp->cb, &cb) == napi_ok && cb != NULL && napi_get_global(env, &recv) == napi_ok &&
      napi_create_int32(env, event, &argv[0]) == napi_ok && napi_create_int32(env, err, &argv[1]) == napi_ok &&
      napi_create_double(env, (double)sp->dir[0].bytes, &argv[2]) == napi_ok &&
      napi_create_double(env, (double)sp->dir[1].bytes, &argv[3]) == napi_ok &&
      napi_create_string_utf8(env, what, NAPI_AUTO_LENGTH, &argv[4]) == napi_ok) {
    sp->in_callback++;
    if (napi_make_callback(env, sp->actx, recv, cb, 5, argv, &result) != napi_ok) report_uncaught(env);
    sp->in_callback--;
  }
  (void)napi_close_handle_scope(env, scope);
  if (sp->closing && sp->in_callback == 0) release_js(sp); /* closed by the callback itself */
}

static void on_poll(uv_poll_t *h, int status, int events);

/* Applies each direction's wants to the two poll handles. Returns 0 or a negative errno. */
static int rearm(splicer_t *sp) {
  for (int i = 0; i < 2; i++) {
    /* end i reads for direction i and writes for direction 1 - i */
    int ev = (sp->dir[i].want_read ? UV_READABLE : 0) | (sp->dir[1 - i].want_write ? UV_WRITABLE : 0);
    if (ev == sp->end[i].events) continue;
    int rc = ev == 0 ? uv_poll_stop(&sp->end[i].handle) : uv_poll_start(&sp->end[i].handle, ev, on_poll);
    if (rc != 0) return rc;
    sp->end[i].events = ev;
  }
  return 0;
}

static void fail(splicer_t *sp, int err, const char *what) {
  close_splicer(sp, 1);
  emit(sp, SP_EV_ERROR, err, what);
  release_js(sp);
}

static void run(splicer_t *sp, int dirs) {
  for (int i = 0; i < 2; i++) {
    if (!(dirs & (1 << i))) continue;
    direction_t *d = &sp->dir[i];
    int was_done = d->done;
    const char *what = "";
    int rc = dir_step(d, sp->end[i].fd, sp->end[1 - i].fd, &what);
    if (rc < 0) return fail(sp, -rc, what);
    if (d->done && !was_done) {
      if (sp->dir[1 - i].done) {
        close_splicer(sp, 0);
        emit(sp, SP_EV_COMPLETE, 0, "");
        release_js(sp);
        return;
      }
      emit(sp, i == 0 ? SP_EV_A_TO_B_ENDED : SP_EV_B_TO_A_ENDED, 0, "");
      if (sp->closing) return; /* the callback closed it */
    }
  }
  int rc = rearm(sp);
  if (rc != 0) fail(sp, -rc, "uv_poll_start");
}

static void on_poll(uv_poll_t *h, int status, int events) {
  end_t *e = (end_t *)h->data;
  splicer_t *sp = e->sp;
  if (sp->closing) return;
  int i = (int)(e - sp->end);
  if (status < 0) {
    /* libuv reports EPOLLERR as UV_EBADF: the socket's own error (ECONNRESET…) says more. */
    int err = 0;
    socklen_t len = sizeof(err);
    if (getsockopt(e->fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0 || err == 0) err = -status;
    return fail(sp, err, i == 0 ? "socket a" : "socket b");
  }
  /* readable on end i feeds direction i; writable on end i drains direction 1 - i */
  int dirs = ((events & UV_READABLE) ? 1 << i : 0) | ((events & UV_WRITABLE) ? 1 << (1 - i) : 0);
  run(sp, dirs);
}

/* spliceStart / spliceBorrow(fdA, fdB, prefixAtoB, prefixBtoA, pipeSize, callback) -> splicer.
 * spliceStart takes ownership of both fds on success only (the caller closes them on a throw);
 * spliceBorrow never closes them. The prefixes are bytes already read from one side that must
 * reach the other first. pipeSize: bytes asked of each direction's pipe (0 = the kernel's
 * default); the caller budgets them, as every pipe page counts against the user's
 * pipe-user-pages-soft. A borrowed fd another uv handle of this loop still watches (a pending write or
 * connect) is refused with EEXIST by uv_poll_init. */
static napi_value start_relay(napi_env env, napi_callback_info info, const char *fn, int owns_fds) {
  int32_t fds[2], pipe_size;
  arg_bytes prefix[2];
  napi_value callback, name, ext;
  if (READ_ARGS(env, info, fn, ARG_I32("fdA", &fds[0]), ARG_I32("fdB", &fds[1]),
                ARG_U8("prefixAtoB", &prefix[0]), ARG_U8("prefixBtoA", &prefix[1]), ARG_I32("pipeSize", &pipe_size),
                ARG_FN("callback", &callback)) != 0)
    return NULL;
  if (pipe_size < 0) return throw_plain(env, EINVAL, fn, "splice relay: pipeSize %d is negative", pipe_size);
  for (int i = 0; i < 2; i++) {
    int type = 0;
    socklen_t len = sizeof(type);
    if (getsockopt(fds[i], SOL_SOCKET, SO_TYPE, &type, &len) != 0)
      return throw_errno(env, errno, "getsockopt", "splice relay: fd %d", fds[i]);
    if (type != SOCK_STREAM) return throw_plain(env, EINVAL, "getsockopt", "splice relay: fd %d is not a stream socket", fds[i]);
  }
  if (fds[0] == fds[1]) return throw_plain(env, EINVAL, fn, "splice relay: both ends are fd %d", fds[0]);
  addon_state *st = state_get(env);
  if (st == NULL) return NULL;
  uv_loop_t *loop;
  NAPI_CALL(env, napi_get_uv_event_loop(env, &loop));
  NAPI_CALL(env, napi_create_string_utf8(env, "ambient:SpliceRelay", NAPI_AUTO_LENGTH, &name));
  splicer_t *sp = calloc(1, sizeof(*sp));
  if (sp == NULL) return throw_errno(env, ENOMEM, "calloc", "splice relay");
  sp->st = st;
  sp->env = env;
  sp->owns_fds = owns_fds;
  sp->dir[0].pipe_r = sp->dir[0].pipe_w = sp->dir[1].pipe_r = sp->dir[1].pipe_w = -1;
  int rc = 0;
  const char *what = "pipe2";
  for (int i = 0; i < 2 && rc == 0; i++) rc = dir_make_pipe(&sp->dir[i], pipe_size);
  for (int i = 0; i < 2 && rc == 0; i++) {
    what = "malloc";
    rc = dir_copy_prefix(&sp->dir[i], prefix[i].data, prefix[i].len);
  }
  for (int i = 0; i < 2 && rc == 0; i++) {
    int fl = fcntl(fds[i], F_GETFL);
    what = "fcntl";
    if (fl < 0 || fcntl(fds[i], F_SETFL, fl | O_NONBLOCK) != 0) rc = -errno;
  }
  if (rc != 0) {
    for (int i = 0; i < 2; i++) {
      if (sp->dir[i].pipe_r >= 0) close(sp->dir[i].pipe_r);
      if (sp->dir[i].pipe_w >= 0) close(sp->dir[i].pipe_w);
      free(sp->dir[i].prefix);
    }
    free(sp);
    return throw_errno(env, -rc, what, "splice relay set-up");
  }
  int inited = 0;
  for (; inited < 2; inited++) {
    end_t *e = &sp->end[inited];
    e->sp = sp;
    e->fd = fds[inited];
    rc = uv_poll_init(loop, &e->handle, e->fd);
    if (rc != 0) break;
    e->handle.data = e;
    st->pending_handles++;
    sp->open_handles++;
  }
  const char *failed = NULL;
  if (rc != 0) failed = "uv_poll_init";
  else if (napi_create_reference(env, callback, 1, &sp->cb) != napi_ok) failed = "napi_create_reference (splice callback)";
  else if (napi_async_init(env, NULL, name, &sp->actx) != napi_ok) failed = "napi_async_init (splice callback)";
  else if (napi_create_external(env, sp, finalize_external, NULL, &ext) != napi_ok) failed = "napi_create_external (splicer)";
  else if ((sp->js_alive = 1) && napi_type_tag_object(env, ext, &SPLICER_TAG) != napi_ok) failed = "napi_type_tag_object (splicer)";
  /* Start: read both sides; a prefix waits for its destination to be writable first. */
  for (int i = 0; i < 2; i++) {
    sp->dir[i].want_read = sp->dir[i].prefix_len == 0;
    sp->dir[i].want_write = sp->dir[i].prefix_len > 0;
  }
  sp->next = st->splicers;
  if (sp->next) sp->next->prev = sp;
  st->splicers = sp;
  if (failed == NULL && (rc = rearm(sp)) != 0) failed = "uv_poll_start";
  if (failed != NULL) {
    if (rc != 0) throw_errno(env, -rc, failed, "splice relay fds %d and %d", fds[0], fds[1]);
    else napi_fail(env, failed);
    release_js(sp);
    /* The fds stay the caller's: close only our handles and pipes. */
    sp->closing = 1;
    unlink_splicer(st, sp);
    for (int i = 0; i < 2; i++) {
      close(sp->dir[i].pipe_r);
      close(sp->dir[i].pipe_w);
    }
    for (int i = 0; i < inited; i++) uv_close((uv_handle_t *)&sp->end[i].handle, on_end_closed);
    maybe_free(sp); /* frees now only if no handle was initialised and no external exists */
    return NULL;
  }
  return ext;
}

static napi_value js_splice_start(napi_env env, napi_callback_info info) {
  return start_relay(env, info, "spliceStart", 1);
}

static napi_value js_splice_borrow(napi_env env, napi_callback_info info) {
  return start_relay(env, info, "spliceBorrow", 0);
}

/* spliceStats(splicer) -> { aToB, bToA, pipeBytes }: bytes moved so far (kept after the relay
 * closed), and the capacity the kernel gave the smaller of the two pipes. */
static napi_value js_splice_stats(napi_env env, napi_callback_info info) {
  splicer_t *sp;
  if (READ_ARGS(env, info, "spliceStats", ARG_EXT("splicer", &sp, &SPLICER_TAG)) != 0) return NULL;
  napi_value obj, a, b, cap;
  size_t pipe_cap = sp->dir[0].pipe_cap < sp->dir[1].pipe_cap ? sp->dir[0].pipe_cap : sp->dir[1].pipe_cap;
  NAPI_CALL(env, napi_create_object(env, &obj));
  NAPI_CALL(env, napi_create_double(env, (double)sp->dir[0].bytes, &a));
  NAPI_CALL(env, napi_create_double(env, (double)sp->dir[1].bytes, &b));
  NAPI_CALL(env, napi_create_double(env, (double)pipe_cap, &cap));
  if (set_prop(env, obj, "aToB", a) != 0 || set_prop(env, obj, "bToA", b) != 0 || set_prop(env, obj, "pipeBytes", cap) != 0) return NULL;
  return obj;
}

/* spliceClose(splicer, reset): stops the relay and closes both fds (borrowed ones: only stops
 * polling them), with RST to each peer when reset (else FIN). No callback follows. Idempotent. */
static napi_value js_splice_close(napi_env env, napi_callback_info info) {
  splicer_t *sp;
  int reset;
  if (READ_ARGS(env, info, "spliceClose", ARG_EXT("splicer", &sp, &SPLICER_TAG), ARG_BOOLEAN("reset", &reset)) != 0)
    return NULL;
  if (sp->closing) return NULL;
  close_splicer(sp, reset);
  if (sp->in_callback == 0) release_js(sp); /* else emit() releases once the callback returned */
  return NULL;
}

void splice_teardown(addon_state *st) {
  while (st->splicers != NULL) {
    splicer_t *sp = st->splicers;
    /* Node closes its own handles before the addon's cleanup hook runs: a borrowed fd number
     * may already belong to another thread's socket, so it is not touched (its peers got the
     * FIN of Node's close, as a JS-relayed connection does). */
    if (!sp->owns_fds) sp->end[0].fd = sp->end[1].fd = -1;
    close_splicer(sp, 1);
  }
}

napi_status register_splice(napi_env env, napi_value exports) {
  EXPORT_FN(env, exports, "spliceStart", js_splice_start);
  EXPORT_FN(env, exports, "spliceBorrow", js_splice_borrow);
  EXPORT_FN(env, exports, "spliceStats", js_splice_stats);
  EXPORT_FN(env, exports, "spliceClose", js_splice_close);
  return napi_ok;
}
