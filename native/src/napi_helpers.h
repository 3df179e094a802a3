/* Helpers every part of the addon shares: reading and type-checking arguments, throwing
 * errors, building result values. They depend on Node-API and state.h only, never on a part. */
#ifndef AMBIENT_NATIVE_NAPI_HELPERS_H
#define AMBIENT_NATIVE_NAPI_HELPERS_H

#include <node_api.h>
#include <stddef.h>
#include <stdint.h>

/* ---- errors (errors.c) ---- */

/* Throws an error built by the JS side (NativeError) from errno, syscall and a context
 * string (printf format). Always returns NULL so callers can `return throw_errno(...)`. */
napi_value throw_errno(napi_env env, int err, const char *syscall, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* Like throw_errno, but the context alone is the message (no strerror appended): for
 * conditions we detect ourselves, such as "fd 7 is a socket, not a network namespace". */
napi_value throw_plain(napi_env env, int err, const char *syscall, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* Throws a TypeError (code ERR_INVALID_ARG_TYPE) for a bad argument: a programming error,
 * not an OS error. printf format. Returns NULL. */
napi_value throw_type(napi_env env, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Throws a RangeError (code ERR_OUT_OF_RANGE). printf format. Returns NULL. */
napi_value throw_range(napi_env env, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* A Node-API call failed: keeps the exception it left pending, or throws ERR_NAPI naming the
 * call. Returns NULL. */
napi_value napi_fail(napi_env env, const char *call);

/* Every Node-API call goes through one of these: on failure, throw and return. */
#define NAPI_TRY(env, call, ret)                  \
  do {                                            \
    if ((call) != napi_ok) {                      \
      napi_fail((env), #call);                    \
      return ret;                                 \
    }                                             \
  } while (0)
#define NAPI_CALL(env, call) NAPI_TRY(env, call, NULL)
#define NAPI_CALL_INT(env, call) NAPI_TRY(env, call, -1)

/* ---- arguments (args.c) ---- */

typedef enum arg_kind {
  ARG_INT32,    /* out: int32_t *; an integer number within int32 */
  ARG_UINT32,   /* out: uint32_t *; an integer number within uint32 */
  ARG_BOOL,     /* out: int * (0 or 1) */
  ARG_STRING,   /* out: char[size]; UTF-8, no NUL bytes, must fit */
  ARG_BYTES,    /* out: arg_bytes *; a Uint8Array (Buffer included) */
  ARG_FUNCTION, /* out: napi_value * */
  ARG_OBJECT,   /* out: napi_value * */
  ARG_EXTERNAL, /* out: void **; a handle this addon returned, carrying spec->tag */
} arg_kind;

typedef struct arg_bytes {
  void *data;
  size_t len;
} arg_bytes;

typedef struct arg_spec {
  const char *name; /* as the JS signature names it; every message carries it */
  arg_kind kind;
  void *out;
  size_t size;              /* ARG_STRING only: buffer size */
  const napi_type_tag *tag; /* ARG_EXTERNAL only: the tag its creator gave it */
} arg_spec;

#define ARG_I32(name, out) {(name), ARG_INT32, (out), 0, NULL}
#define ARG_U32(name, out) {(name), ARG_UINT32, (out), 0, NULL}
#define ARG_BOOLEAN(name, out) {(name), ARG_BOOL, (out), 0, NULL}
#define ARG_STR(name, buf) {(name), ARG_STRING, (buf), sizeof(buf), NULL}
#define ARG_U8(name, out) {(name), ARG_BYTES, (out), 0, NULL}
#define ARG_FN(name, out) {(name), ARG_FUNCTION, (out), 0, NULL}
#define ARG_OBJ(name, out) {(name), ARG_OBJECT, (out), 0, NULL}
#define ARG_EXT(name, out, tag) {(name), ARG_EXTERNAL, (out), 0, (tag)}

/* THE argument reader: gets the call's arguments, and for each declared one checks presence
 * and type and converts it. A missing argument throws TypeError ERR_MISSING_ARGS, a wrong type
 * TypeError ERR_INVALID_ARG_TYPE, a number out of range RangeError; every message names
 * `fn` and the argument. Returns 0, or -1 with the exception pending. */
int read_args(napi_env env, napi_callback_info info, const char *fn, const arg_spec *specs, size_t n);
#define READ_ARGS(env, info, fn, ...)                                         \
  read_args((env), (info), (fn), (const arg_spec[]){__VA_ARGS__},            \
            sizeof((const arg_spec[]){__VA_ARGS__}) / sizeof(arg_spec))

/* Reads property `key` of obj, checked like an argument and named spec->name in messages.
 * *present = 0 (and out untouched) when the property is undefined or null. */
int read_prop(napi_env env, const char *fn, napi_value obj, const char *key, const arg_spec *spec, int *present);

/* ---- values (values.c); each returns NULL / -1 after throwing ---- */

napi_value make_int(napi_env env, int64_t v);
napi_value make_bool(napi_env env, int v);
napi_value make_bigint(napi_env env, uint64_t v);
napi_value make_identity(napi_env env, uint64_t dev, uint64_t ino);
int set_prop(napi_env env, napi_value obj, const char *key, napi_value v);
int set_int_prop(napi_env env, napi_value obj, const char *key, int64_t v);

/* Creates function `name` and sets it on exports; returns the failing status. */
napi_status export_fn(napi_env env, napi_value exports, const char *name, napi_callback fn);
#define EXPORT_FN(env, exports, name, fn)                        \
  do {                                                           \
    napi_status s_ = export_fn((env), (exports), (name), (fn));  \
    if (s_ != napi_ok) return s_;                                \
  } while (0)

#endif
