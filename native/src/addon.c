/* Module entry, per-environment state, errors and argument helpers. */
#include "common.h"

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

addon_state *get_state(napi_env env) {
  void *data = NULL;
  if (napi_get_instance_data(env, &data) != napi_ok) return NULL;
  return (addon_state *)data;
}

napi_value throw_type(napi_env env, const char *msg) {
  napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", msg);
  return NULL;
}

static napi_value throw_built(napi_env env, int err, const char *syscall, const char *context, const char *text) {
  addon_state *st = get_state(env);
  napi_value fn = NULL;
  if (st != NULL && st->make_error != NULL &&
      napi_get_reference_value(env, st->make_error, &fn) == napi_ok && fn != NULL) {
    napi_value argv[4], undef, error;
    napi_create_string_utf8(env, context, NAPI_AUTO_LENGTH, &argv[0]);
    napi_create_int32(env, err, &argv[1]);
    napi_create_string_utf8(env, syscall, NAPI_AUTO_LENGTH, &argv[2]);
    napi_create_string_utf8(env, text, NAPI_AUTO_LENGTH, &argv[3]);
    napi_get_undefined(env, &undef);
    /* If make_error itself throws, that exception stays pending. */
    if (napi_call_function(env, undef, fn, 4, argv, &error) == napi_ok) napi_throw(env, error);
    return NULL;
  }
  char msg[800];
  if (text[0] != '\0') snprintf(msg, sizeof(msg), "%s: %s", context, text);
  else snprintf(msg, sizeof(msg), "%s", context);
  napi_throw_error(env, NULL, msg);
  return NULL;
}

napi_value throw_errno(napi_env env, int err, const char *syscall, const char *fmt, ...) {
  char context[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(context, sizeof(context), fmt, ap);
  va_end(ap);
  char errbuf[256];
  /* GNU strerror_r returns the message pointer (maybe not errbuf). */
  const char *text = strerror_r(err, errbuf, sizeof(errbuf));
  return throw_built(env, err, syscall, context, text);
}

napi_value throw_plain(napi_env env, int err, const char *syscall, const char *fmt, ...) {
  char context[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(context, sizeof(context), fmt, ap);
  va_end(ap);
  return throw_built(env, err, syscall, context, "");
}

/* Throws a TypeError "<name> must be <what>" unless v has the given JS type. */
static int expect_type(napi_env env, napi_value v, const char *name, napi_valuetype want, const char *what) {
  napi_valuetype t;
  if (napi_typeof(env, v, &t) == napi_ok && t == want) return 0;
  char msg[160];
  snprintf(msg, sizeof(msg), "%s must be %s", name, what);
  throw_type(env, msg);
  return -1;
}

int arg_int32(napi_env env, napi_value v, const char *name, int32_t *out) {
  if (expect_type(env, v, name, napi_number, "a number") != 0) return -1;
  napi_get_value_int32(env, v, out);
  return 0;
}

int fd_arg(napi_env env, napi_callback_info info, int32_t *fd) {
  size_t argc = 1;
  napi_value argv[1];
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok) {
    napi_throw_error(env, "ERR_NAPI", "Node-API call failed: napi_get_cb_info");
    return -1;
  }
  if (argc < 1) {
    throw_type(env, "fd argument missing");
    return -1;
  }
  return arg_int32(env, argv[0], "fd", fd);
}

int arg_uint32(napi_env env, napi_value v, const char *name, uint32_t *out) {
  if (expect_type(env, v, name, napi_number, "a number") != 0) return -1;
  napi_get_value_uint32(env, v, out);
  return 0;
}

int arg_bool(napi_env env, napi_value v, const char *name, int *out) {
  if (expect_type(env, v, name, napi_boolean, "a boolean") != 0) return -1;
  bool b = false;
  napi_get_value_bool(env, v, &b);
  *out = b ? 1 : 0;
  return 0;
}

int arg_string(napi_env env, napi_value v, const char *name, char *buf, size_t len) {
  size_t n = 0;
  char msg[160];
  if (expect_type(env, v, name, napi_string, "a string") != 0) return -1;
  napi_get_value_string_utf8(env, v, NULL, 0, &n);
  if (n + 1 > len) {
    snprintf(msg, sizeof(msg), "%s is too long (%zu bytes, at most %zu)", name, n, len - 1);
    napi_throw_range_error(env, "ERR_OUT_OF_RANGE", msg);
    return -1;
  }
  napi_get_value_string_utf8(env, v, buf, len, &n);
  if (strlen(buf) != n) {
    snprintf(msg, sizeof(msg), "%s must not contain NUL bytes", name);
    throw_type(env, msg);
    return -1;
  }
  return 0;
}

int prop_get(napi_env env, napi_value obj, const char *name, napi_value *out, int *present) {
  napi_valuetype t;
  if (napi_get_named_property(env, obj, name, out) != napi_ok) return -1;
  napi_typeof(env, *out, &t);
  *present = !(t == napi_undefined || t == napi_null);
  return 0;
}

napi_value make_int(napi_env env, int64_t v) {
  napi_value r;
  napi_create_int64(env, v, &r);
  return r;
}

napi_value make_identity(napi_env env, uint64_t dev, uint64_t ino) {
  napi_value obj, d, i;
  napi_create_object(env, &obj);
  napi_create_bigint_uint64(env, dev, &d);
  napi_create_bigint_uint64(env, ino, &i);
  napi_set_named_property(env, obj, "dev", d);
  napi_set_named_property(env, obj, "ino", i);
  return obj;
}

/* The thread's own netns is opened once per environment (= per JS thread) and kept, so a
 * switch costs two setns() calls and no open(). */
int netns_enter(napi_env env, addon_state *st, int nsfd) {
  if (st->home_netns_fd < 0) {
    int fd = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
      throw_errno(env, errno, "open", "open /proc/thread-self/ns/net");
      return -1;
    }
    st->home_netns_fd = fd;
  }
  if (setns(nsfd, CLONE_NEWNET) != 0) {
    throw_errno(env, errno, "setns", "setns into netns fd %d", nsfd);
    return -1;
  }
  return 0;
}

void netns_leave(addon_state *st, int nsfd) {
  if (setns(st->home_netns_fd, CLONE_NEWNET) != 0) {
    /* Continuing would create every later socket of this thread (the Kubernetes client's,
     * the admin server's) in a pod's netns without anyone noticing. */
    fprintf(stderr,
            "ambient_native: FATAL: could not switch thread back to its own netns after using "
            "netns fd %d: %s; aborting rather than continuing in the wrong netns\n",
            nsfd, strerror(errno));
    abort();
  }
}

/* Called by the JS loader once per environment: the factory for NativeError instances. */
static napi_value js_init(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  napi_valuetype t;
  NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 1 || napi_typeof(env, argv[0], &t) != napi_ok || t != napi_function)
    return throw_type(env, "init(makeError) needs a function");
  addon_state *st = get_state(env);
  if (st->make_error != NULL) napi_delete_reference(env, st->make_error);
  NAPI_CALL(env, napi_create_reference(env, argv[0], 1, &st->make_error));
  return NULL;
}

static void free_state(addon_state *st) {
  free(st->scratch);
  free(st);
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
  if (st->pending_handles == 0) {
    napi_remove_async_cleanup_hook(handle);
    free_state(st);
  }
}

static void noop_finalize(napi_env env, void *data, void *hint) {
  (void)env;
  (void)data;
  (void)hint;
}

NAPI_MODULE_INIT() {
  addon_state *st = calloc(1, sizeof(*st));
  if (st == NULL) {
    napi_throw_error(env, NULL, "ambient_native: out of memory");
    return NULL;
  }
  st->home_netns_fd = -1;
  if (napi_set_instance_data(env, st, noop_finalize, NULL) != napi_ok ||
      napi_add_async_cleanup_hook(env, async_cleanup, st, NULL) != napi_ok) {
    free(st);
    napi_throw_error(env, NULL, "ambient_native: could not register per-environment state");
    return NULL;
  }
  if (register_netns(env, exports) != napi_ok || register_sockets(env, exports) != napi_ok ||
      register_seqpacket(env, exports) != napi_ok || register_poll(env, exports) != napi_ok) {
    napi_throw_error(env, NULL, "ambient_native: could not register functions");
    return NULL;
  }
  napi_value f;
  if (napi_create_function(env, "init", NAPI_AUTO_LENGTH, js_init, NULL, &f) == napi_ok)
    napi_set_named_property(env, exports, "init", f);
  return exports;
}
