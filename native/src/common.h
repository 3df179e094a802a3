/* Shared declarations of the ambient_native addon (plain C, Node-API 8, context-aware). */
#ifndef AMBIENT_NATIVE_COMMON_H
#define AMBIENT_NATIVE_COMMON_H

#include <node_api.h>
#include <stddef.h>
#include <stdint.h>

struct poller;

/* Per-environment state (one per main thread / worker_thread that loads the addon). It is
 * freed when the last uv handle of the environment has closed, not by an instance-data
 * finalizer, because uv close callbacks may run after Node-API tore the env down. */
typedef struct addon_state {
  napi_ref make_error;            /* JS function(context, errno, syscall, strerror) -> Error */
  int home_netns_fd;              /* this thread's own netns, opened on first switch */
  struct poller *pollers;         /* live (not yet closing) pollers */
  int pending_handles;            /* uv handles not yet through their close callback */
  int tearing_down;
  napi_async_cleanup_hook_handle cleanup_handle;
  char *scratch;                  /* receive buffer, grown to the largest maxDatagram */
  size_t scratch_len;
} addon_state;

addon_state *get_state(napi_env env);

/* Throws an error built by the JS side (NativeError) from errno, syscall and a context
 * string (printf format). Always returns NULL so callers can `return throw_errno(...)`. */
napi_value throw_errno(napi_env env, int err, const char *syscall, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* Like throw_errno, but the context alone is the message (no strerror appended): for
 * conditions we detect ourselves, such as "fd 7 is a socket, not a network namespace". */
napi_value throw_plain(napi_env env, int err, const char *syscall, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* Throws a TypeError for a bad argument (a programming error, not an OS error). */
napi_value throw_type(napi_env env, const char *msg);

/* Argument helpers: return 0 on success, -1 after throwing. */
int arg_int32(napi_env env, napi_value v, const char *name, int32_t *out);
/* The single fd argument most functions take: 0, or -1 with a JS exception pending. */
int fd_arg(napi_env env, napi_callback_info info, int32_t *fd);
int arg_uint32(napi_env env, napi_value v, const char *name, uint32_t *out);
int arg_bool(napi_env env, napi_value v, const char *name, int *out);
int arg_string(napi_env env, napi_value v, const char *name, char *buf, size_t len);
/* Reads an optional property: *present = 0 when undefined or null. */
int prop_get(napi_env env, napi_value obj, const char *name, napi_value *out, int *present);

napi_value make_int(napi_env env, int64_t v);
napi_value make_identity(napi_env env, uint64_t dev, uint64_t ino);

/* Enter a netns on the calling thread and come back; come back aborts on failure. */
int netns_enter(napi_env env, addon_state *st, int nsfd);
void netns_leave(addon_state *st, int nsfd);

/* Module parts register their functions on exports. */
napi_status register_netns(napi_env env, napi_value exports);
napi_status register_sockets(napi_env env, napi_value exports);
napi_status register_seqpacket(napi_env env, napi_value exports);
napi_status register_poll(napi_env env, napi_value exports);
void poll_teardown(addon_state *st);

#define NAPI_CALL(env, call)                                      \
  do {                                                            \
    if ((call) != napi_ok) {                                      \
      napi_throw_error((env), "ERR_NAPI", "Node-API call failed: " #call); \
      return NULL;                                                \
    }                                                             \
  } while (0)

#define EXPORT_FN(env, exports, name, fn)                                        \
  do {                                                                           \
    napi_value f_;                                                               \
    napi_status s_ = napi_create_function((env), name, NAPI_AUTO_LENGTH, fn, NULL, &f_); \
    if (s_ != napi_ok) return s_;                                                \
    s_ = napi_set_named_property((env), (exports), name, f_);                    \
    if (s_ != napi_ok) return s_;                                                \
  } while (0)

#endif
