/* Readiness of an fd on the environment's libuv loop (uv_poll_t). A poller owns its fd:
 * pollClose() stops polling and closes it, and env teardown does the same for every poller
 * still open, so a worker_thread can exit with sockets open. */
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <unistd.h>
#include <uv.h>

#include "napi_helpers.h"
#include "parts.h"
#include "state.h"

/* Marks the externals pollStart returns, so no other value passes for a poller. */
static const napi_type_tag POLLER_TAG = {0x616d6269656e7450ULL, 0x6f6c6c6572000001ULL};

#define EV_READABLE 1
#define EV_WRITABLE 2

typedef struct poller {
  uv_poll_t handle;
  addon_state *st;
  napi_env env;
  napi_ref cb;
  napi_async_context actx;
  int fd;
  int closing;
  int handle_open; /* the uv handle is initialised and its close callback has not run */
  int js_alive;    /* the external JS holds still points here (cleared by its finalizer) */
  struct poller *prev, *next;
} poller_t;

static void unlink_poller(addon_state *st, poller_t *p) {
  if (p->prev) p->prev->next = p->next;
  else st->pollers = p->next;
  if (p->next) p->next->prev = p->prev;
  p->prev = p->next = NULL;
}

/* Freed once both the uv handle and the JS external are gone: a pollUpdate/pollClose on an
 * external whose handle already closed must still find the struct (closing = 1). */
static void maybe_free(poller_t *p) {
  if (p->handle_open || p->js_alive) return;
  free(p);
}

static void on_closed(uv_handle_t *h) {
  poller_t *p = (poller_t *)h->data;
  addon_state *st = p->st;
  p->handle_open = 0;
  maybe_free(p);
  st->pending_handles--;
  state_release_if_idle(st);
}

static void finalize_external(napi_env env, void *data, void *hint) {
  (void)env;
  (void)hint;
  poller_t *p = (poller_t *)data;
  p->js_alive = 0;
  maybe_free(p);
}

/* A callback that threw: hand its exception to process 'uncaughtException', as Node does for
 * its own handles. */
static void report_uncaught(napi_env env) {
  bool pending = false;
  napi_value err;
  if (napi_is_exception_pending(env, &pending) != napi_ok || !pending) return;
  if (napi_get_and_clear_last_exception(env, &err) == napi_ok) (void)napi_fatal_exception(env, err);
}

static void on_poll(uv_poll_t *h, int status, int events) {
  poller_t *p = (poller_t *)h->data;
  if (p->closing) return;
  napi_env env = p->env;
  napi_handle_scope scope;
  /* Node-API only refuses these while the environment is going away, when nobody is left to
   * deliver the event to: then the event is dropped. */
  if (napi_open_handle_scope(env, &scope) != napi_ok) return;
  napi_value cb, recv, argv[2], result;
  int ev = ((events & UV_READABLE) ? EV_READABLE : 0) | ((events & UV_WRITABLE) ? EV_WRITABLE : 0);
  if (napi_get_reference_value(env, p->cb, &cb) == napi_ok && cb != NULL &&
      napi_get_global(env, &recv) == napi_ok && /* make_callback needs an object receiver */
      napi_create_int32(env, status, &argv[0]) == napi_ok && napi_create_int32(env, ev, &argv[1]) == napi_ok) {
    /* make_callback runs the microtask queue afterwards, like Node's own handles. */
    if (napi_make_callback(env, p->actx, recv, cb, 2, argv, &result) != napi_ok) report_uncaught(env);
  }
  (void)napi_close_handle_scope(env, scope); /* fails only for a scope we did not open */
}

/* pollStart(fd, callback(status, events)) -> poller. Takes ownership of fd on success only. */
static napi_value js_poll_start(napi_env env, napi_callback_info info) {
  int32_t fd;
  napi_value callback, name;
  if (READ_ARGS(env, info, "pollStart", ARG_I32("fd", &fd), ARG_FN("callback", &callback)) != 0) return NULL;
  addon_state *st = state_get(env);
  if (st == NULL) return NULL;
  uv_loop_t *loop;
  NAPI_CALL(env, napi_get_uv_event_loop(env, &loop));
  NAPI_CALL(env, napi_create_string_utf8(env, "ambient:UnixSeqpacket", NAPI_AUTO_LENGTH, &name));
  poller_t *p = calloc(1, sizeof(*p));
  if (p == NULL) return throw_errno(env, ENOMEM, "uv_poll_init", "poll fd %d", fd);
  int rc = uv_poll_init(loop, &p->handle, fd);
  if (rc != 0) {
    free(p);
    return throw_errno(env, -rc, "uv_poll_init", "poll fd %d", fd);
  }
  p->handle.data = p;
  p->handle_open = 1;
  p->st = st;
  p->env = env;
  p->fd = fd;
  napi_value ext;
  const char *failed = NULL;
  if (napi_create_reference(env, callback, 1, &p->cb) != napi_ok) failed = "napi_create_reference (poll callback)";
  else if (napi_async_init(env, NULL, name, &p->actx) != napi_ok) failed = "napi_async_init (poll callback)";
  else if (napi_create_external(env, p, finalize_external, NULL, &ext) != napi_ok) failed = "napi_create_external (poller)";
  else if ((p->js_alive = 1) && napi_type_tag_object(env, ext, &POLLER_TAG) != napi_ok) failed = "napi_type_tag_object (poller)";
  st->pending_handles++;
  if (failed != NULL) {
    napi_fail(env, failed);
    /* The handle is initialised: it must go through uv_close, but the fd stays the caller's. */
    if (p->actx != NULL) (void)napi_async_destroy(env, p->actx);
    if (p->cb != NULL) (void)napi_delete_reference(env, p->cb);
    p->fd = -1;
    p->closing = 1;
    uv_close((uv_handle_t *)&p->handle, on_closed);
    return NULL;
  }
  p->next = st->pollers;
  if (p->next) p->next->prev = p;
  st->pollers = p;
  return ext;
}

/* pollUpdate(poller, events): 0 stops, bit 1 readable, bit 2 writable. No-op once closed. */
static napi_value js_poll_update(napi_env env, napi_callback_info info) {
  poller_t *p;
  int32_t ev;
  if (READ_ARGS(env, info, "pollUpdate", ARG_EXT("poller", &p, &POLLER_TAG), ARG_I32("events", &ev)) != 0) return NULL;
  if (p->closing) return NULL;
  int uvev = ((ev & EV_READABLE) ? UV_READABLE : 0) | ((ev & EV_WRITABLE) ? UV_WRITABLE : 0);
  int rc = uvev == 0 ? uv_poll_stop(&p->handle) : uv_poll_start(&p->handle, uvev, on_poll);
  if (rc != 0) return throw_errno(env, -rc, "uv_poll_start", "poll fd %d", p->fd);
  return NULL;
}

/* pollRef(poller, ref): whether this handle keeps the event loop alive. */
static napi_value js_poll_ref(napi_env env, napi_callback_info info) {
  poller_t *p;
  int ref;
  if (READ_ARGS(env, info, "pollRef", ARG_EXT("poller", &p, &POLLER_TAG), ARG_BOOLEAN("ref", &ref)) != 0) return NULL;
  if (p->closing) return NULL;
  if (ref) uv_ref((uv_handle_t *)&p->handle);
  else uv_unref((uv_handle_t *)&p->handle);
  return NULL;
}

/* Stops polling (synchronously, inside uv_close) and only then closes the fd, so epoll never
 * watches a closed or reused fd number. */
static void close_poller(poller_t *p) {
  p->closing = 1;
  unlink_poller(p->st, p);
  uv_close((uv_handle_t *)&p->handle, on_closed);
  if (p->fd >= 0) close(p->fd);
  p->fd = -1;
}

/* pollClose(poller): idempotent. */
static napi_value js_poll_close(napi_env env, napi_callback_info info) {
  poller_t *p;
  if (READ_ARGS(env, info, "pollClose", ARG_EXT("poller", &p, &POLLER_TAG)) != 0) return NULL;
  if (p->closing) return NULL;
  /* Polling stops and the fd closes whatever these report: a failure only leaks a reference. */
  napi_status s1 = napi_delete_reference(env, p->cb);
  napi_status s2 = napi_async_destroy(env, p->actx);
  close_poller(p);
  if (s1 != napi_ok) return napi_fail(env, "napi_delete_reference (poll callback)");
  if (s2 != napi_ok) return napi_fail(env, "napi_async_destroy (poll callback)");
  return NULL;
}

void poll_teardown(addon_state *st) {
  /* No Node-API calls here: the env is going away and owns the references. */
  while (st->pollers != NULL) close_poller(st->pollers);
}

napi_status register_poll(napi_env env, napi_value exports) {
  EXPORT_FN(env, exports, "pollStart", js_poll_start);
  EXPORT_FN(env, exports, "pollUpdate", js_poll_update);
  EXPORT_FN(env, exports, "pollRef", js_poll_ref);
  EXPORT_FN(env, exports, "pollClose", js_poll_close);
  return napi_ok;
}
