/* Readiness of an fd on the environment's libuv loop (uv_poll_t). A poller owns its fd:
 * pollClose() stops polling and closes it, and env teardown does the same for every poller
 * still open, so a worker_thread can exit with sockets open. */
#include "common.h"

#include <stdlib.h>
#include <unistd.h>
#include <uv.h>

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
  struct poller *prev, *next;
} poller_t;

static void unlink_poller(addon_state *st, poller_t *p) {
  if (p->prev) p->prev->next = p->next;
  else st->pollers = p->next;
  if (p->next) p->next->prev = p->prev;
  p->prev = p->next = NULL;
}

static void on_closed(uv_handle_t *h) {
  poller_t *p = (poller_t *)h->data;
  addon_state *st = p->st;
  free(p);
  st->pending_handles--;
  if (st->tearing_down && st->pending_handles == 0) {
    napi_remove_async_cleanup_hook(st->cleanup_handle);
    free(st->scratch);
    free(st);
  }
}

static void on_poll(uv_poll_t *h, int status, int events) {
  poller_t *p = (poller_t *)h->data;
  if (p->closing) return;
  napi_env env = p->env;
  napi_handle_scope scope;
  if (napi_open_handle_scope(env, &scope) != napi_ok) return;
  napi_value cb, recv, argv[2], result;
  int ev = ((events & UV_READABLE) ? EV_READABLE : 0) | ((events & UV_WRITABLE) ? EV_WRITABLE : 0);
  if (napi_get_reference_value(env, p->cb, &cb) == napi_ok && cb != NULL) {
    napi_get_global(env, &recv); /* make_callback needs an object receiver */
    napi_create_int32(env, status, &argv[0]);
    napi_create_int32(env, ev, &argv[1]);
    /* make_callback runs the microtask queue afterwards, like Node's own handles. */
    if (napi_make_callback(env, p->actx, recv, cb, 2, argv, &result) != napi_ok) {
      bool pending = false;
      napi_is_exception_pending(env, &pending);
      if (pending) {
        napi_value err;
        napi_get_and_clear_last_exception(env, &err);
        napi_fatal_exception(env, err);
      }
    }
  }
  napi_close_handle_scope(env, scope);
}

/* pollStart(fd, callback(status, events)) -> poller. Takes ownership of fd on success only. */
static napi_value js_poll_start(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  int32_t fd;
  napi_valuetype t;
  NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 2 || arg_int32(env, argv[0], "fd", &fd) != 0) return NULL;
  if (napi_typeof(env, argv[1], &t) != napi_ok || t != napi_function) return throw_type(env, "callback must be a function");
  addon_state *st = get_state(env);
  uv_loop_t *loop;
  NAPI_CALL(env, napi_get_uv_event_loop(env, &loop));
  poller_t *p = calloc(1, sizeof(*p));
  if (p == NULL) return throw_errno(env, 12 /* ENOMEM */, "uv_poll_init", "poll fd %d", fd);
  int rc = uv_poll_init(loop, &p->handle, fd);
  if (rc != 0) {
    free(p);
    return throw_errno(env, -rc, "uv_poll_init", "poll fd %d", fd);
  }
  p->handle.data = p;
  p->st = st;
  p->env = env;
  p->fd = fd;
  napi_value name;
  napi_create_string_utf8(env, "ambient:UnixSeqpacket", NAPI_AUTO_LENGTH, &name);
  if (napi_create_reference(env, argv[1], 1, &p->cb) != napi_ok ||
      napi_async_init(env, NULL, name, &p->actx) != napi_ok) {
    /* The handle is initialised: it must go through uv_close, but the fd stays the caller's. */
    p->fd = -1;
    p->closing = 1;
    st->pending_handles++;
    uv_close((uv_handle_t *)&p->handle, on_closed);
    napi_throw_error(env, NULL, "ambient_native: could not set up poll callback");
    return NULL;
  }
  st->pending_handles++;
  p->next = st->pollers;
  if (p->next) p->next->prev = p;
  st->pollers = p;
  napi_value ext;
  NAPI_CALL(env, napi_create_external(env, p, NULL, NULL, &ext));
  return ext;
}

static poller_t *get_poller(napi_env env, napi_value v) {
  void *data = NULL;
  napi_valuetype t;
  if (napi_typeof(env, v, &t) != napi_ok || t != napi_external || napi_get_value_external(env, v, &data) != napi_ok) {
    throw_type(env, "poller handle expected");
    return NULL;
  }
  return (poller_t *)data;
}

/* pollUpdate(poller, events): 0 stops, bit 1 readable, bit 2 writable. No-op once closed. */
static napi_value js_poll_update(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  int32_t ev;
  NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 2) return throw_type(env, "pollUpdate(poller, events)");
  poller_t *p = get_poller(env, argv[0]);
  if (p == NULL || arg_int32(env, argv[1], "events", &ev) != 0) return NULL;
  if (p->closing) return NULL;
  int uvev = ((ev & EV_READABLE) ? UV_READABLE : 0) | ((ev & EV_WRITABLE) ? UV_WRITABLE : 0);
  int rc = uvev == 0 ? uv_poll_stop(&p->handle) : uv_poll_start(&p->handle, uvev, on_poll);
  if (rc != 0) return throw_errno(env, -rc, "uv_poll_start", "poll fd %d", p->fd);
  return NULL;
}

/* pollRef(poller, ref): whether this handle keeps the event loop alive. */
static napi_value js_poll_ref(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  int ref;
  NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 2) return throw_type(env, "pollRef(poller, ref)");
  poller_t *p = get_poller(env, argv[0]);
  if (p == NULL || arg_bool(env, argv[1], "ref", &ref) != 0) return NULL;
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
  size_t argc = 1;
  napi_value argv[1];
  NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 1) return throw_type(env, "pollClose(poller)");
  poller_t *p = get_poller(env, argv[0]);
  if (p == NULL || p->closing) return NULL;
  napi_delete_reference(env, p->cb);
  napi_async_destroy(env, p->actx);
  close_poller(p);
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
