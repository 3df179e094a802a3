/* Per-environment state of the addon (one per main thread / worker_thread that loads it). */
#ifndef AMBIENT_NATIVE_STATE_H
#define AMBIENT_NATIVE_STATE_H

#include <node_api.h>
#include <stddef.h>

struct poller;
struct splicer;

/* Freed when the last uv handle of the environment has closed, not by an instance-data
 * finalizer, because uv close callbacks may run after Node-API tore the env down. */
typedef struct addon_state {
  napi_ref make_error;            /* JS function(context, errno, syscall, strerror) -> Error */
  int home_netns_fd;              /* this thread's own netns, opened on first switch */
  struct poller *pollers;         /* live (not yet closing) pollers */
  struct splicer *splicers;       /* live (not yet closing) splice relays */
  int pending_handles;            /* uv handles not yet through their close callback */
  int tearing_down;
  napi_async_cleanup_hook_handle cleanup_handle;
  char *scratch;                  /* receive buffer, grown to the largest maxDatagram */
  size_t scratch_len;
} addon_state;

/* The environment's state, or NULL (with no exception thrown) if Node-API cannot give it. */
addon_state *state_peek(napi_env env);
/* The environment's state; NULL after throwing when Node-API cannot give it. */
addon_state *state_get(napi_env env);
/* Frees the state once the environment is tearing down and no uv handle is still closing;
 * returns 1 when it did. Called by the cleanup hook and by every handle's close callback. */
int state_release_if_idle(addon_state *st);

#endif
