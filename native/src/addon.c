/* Module entry: per-environment state set-up and teardown, the JS error factory, and the
 * registration of every part. */
#include <stdlib.h>
#include <unistd.h>

#include "napi_helpers.h"
#include "parts.h"
#include "state.h"

/* Called by the JS loader once per environment: the factory for NativeError instances. */
static napi_value js_init(napi_env env, napi_callback_info info) {
  napi_value make_error;
  if (READ_ARGS(env, info, "init", ARG_FN("makeError", &make_error)) != 0) return NULL;
  addon_state *st = state_get(env);
  if (st == NULL) return NULL;
  if (st->make_error != NULL) {
    NAPI_CALL(env, napi_delete_reference(env, st->make_error));
    st->make_error = NULL;
  }
  NAPI_CALL(env, napi_create_reference(env, make_error, 1, &st->make_error));
  return NULL;
}

/* Env teardown (worker exit, process end): close every poll handle and fd we own; the hook
 * stays registered until the last uv close callback ran, so the worker's loop can close. */
static void async_cleanup(napi_async_cleanup_hook_handle handle, void *arg) {
  addon_state *st = (addon_state *)arg;
  st->cleanup_handle = handle;
  st->tearing_down = 1;
  if (st->home_netns_fd >= 0) {
    close(st->home_netns_fd);
    st->home_netns_fd = -1;
  }
  poll_teardown(st);
  splice_teardown(st);
  state_release_if_idle(st);
}

static void noop_finalize(napi_env env, void *data, void *hint) {
  (void)env;
  (void)data;
  (void)hint;
}

static napi_status register_all(napi_env env, napi_value exports) {
  napi_status s;
  if ((s = register_netns(env, exports)) != napi_ok || (s = register_sockets(env, exports)) != napi_ok ||
      (s = register_seqpacket(env, exports)) != napi_ok || (s = register_poll(env, exports)) != napi_ok ||
      (s = register_splice(env, exports)) != napi_ok || (s = register_thread(env, exports)) != napi_ok)
    return s;
  return export_fn(env, exports, "init", js_init);
}

NAPI_MODULE_INIT() {
  addon_state *st = calloc(1, sizeof(*st));
  if (st == NULL) {
    (void)napi_throw_error(env, NULL, "ambient_native: out of memory");
    return NULL;
  }
  st->home_netns_fd = -1;
  if (napi_set_instance_data(env, st, noop_finalize, NULL) != napi_ok) {
    free(st);
    return napi_fail(env, "napi_set_instance_data (ambient_native per-environment state)");
  }
  if (napi_add_async_cleanup_hook(env, async_cleanup, st, NULL) != napi_ok) {
    /* The instance data points at st: leave it allocated rather than dangling. */
    return napi_fail(env, "napi_add_async_cleanup_hook (ambient_native teardown)");
  }
  if (register_all(env, exports) != napi_ok) return napi_fail(env, "ambient_native: registering its functions");
  return exports;
}
