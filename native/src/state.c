/* Per-environment state: lookup and release. */
#include "state.h"

#include <stdlib.h>

addon_state *state_peek(napi_env env) {
  void *data = NULL;
  if (napi_get_instance_data(env, &data) != napi_ok) return NULL;
  return (addon_state *)data;
}

addon_state *state_get(napi_env env) {
  addon_state *st = state_peek(env);
  /* Depends on nothing but Node-API, so the error helpers can use this file and not the reverse. */
  if (st == NULL)
    (void)napi_throw_error(env, "ERR_NAPI", "ambient_native: Node-API gave no per-environment state");
  return st;
}

int state_release_if_idle(addon_state *st) {
  if (!st->tearing_down || st->pending_handles > 0) return 0;
  /* Nothing useful can be done if removing the hook fails while the env goes away. */
  (void)napi_remove_async_cleanup_hook(st->cleanup_handle);
  free(st->scratch);
  free(st);
  return 1;
}
