/* The one argument reader: presence, JS type and range of every argument and option, with
 * messages that name the function and the argument. */
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "napi_helpers.h"

#define MAX_ARGS 8

static const char *type_name(napi_valuetype t) {
  switch (t) {
    case napi_undefined: return "undefined";
    case napi_null: return "null";
    case napi_boolean: return "a boolean";
    case napi_number: return "a number";
    case napi_string: return "a string";
    case napi_symbol: return "a symbol";
    case napi_object: return "an object";
    case napi_function: return "a function";
    case napi_external: return "an external";
    case napi_bigint: return "a bigint";
  }
  return "an unknown type";
}

static const char *kind_name(arg_kind k) {
  switch (k) {
    case ARG_INT32:
    case ARG_UINT32: return "an integer";
    case ARG_BOOL: return "a boolean";
    case ARG_STRING: return "a string";
    case ARG_BYTES: return "a Uint8Array";
    case ARG_FUNCTION: return "a function";
    case ARG_OBJECT: return "an object";
    case ARG_EXTERNAL: return "a handle returned by this addon";
  }
  return "?";
}

static napi_valuetype kind_type(arg_kind k) {
  switch (k) {
    case ARG_INT32:
    case ARG_UINT32: return napi_number;
    case ARG_BOOL: return napi_boolean;
    case ARG_STRING: return napi_string;
    case ARG_BYTES:
    case ARG_OBJECT: return napi_object;
    case ARG_FUNCTION: return napi_function;
    case ARG_EXTERNAL: return napi_external;
  }
  return napi_undefined;
}

static int wrong_type(napi_env env, const char *fn, const arg_spec *s, const char *got) {
  throw_type(env, "%s: %s must be %s (got %s)", fn, s->name, kind_name(s->kind), got);
  return -1;
}

static int read_integer(napi_env env, const char *fn, const arg_spec *s, napi_value v) {
  double d;
  NAPI_CALL_INT(env, napi_get_value_double(env, v, &d));
  double lo = s->kind == ARG_INT32 ? (double)INT32_MIN : 0.0;
  double hi = s->kind == ARG_INT32 ? (double)INT32_MAX : (double)UINT32_MAX;
  /* NaN fails both comparisons; inside the range the cast is exact for integers. */
  if (!(d >= lo && d <= hi) || (double)(int64_t)d != d) {
    throw_range(env, "%s: %s must be an integer in %.0f..%.0f (got %g)", fn, s->name, lo, hi, d);
    return -1;
  }
  if (s->kind == ARG_INT32) *(int32_t *)s->out = (int32_t)d;
  else *(uint32_t *)s->out = (uint32_t)d;
  return 0;
}

static int read_string(napi_env env, const char *fn, const arg_spec *s, napi_value v) {
  size_t n = 0;
  char *buf = s->out;
  NAPI_CALL_INT(env, napi_get_value_string_utf8(env, v, NULL, 0, &n));
  if (n + 1 > s->size) {
    throw_range(env, "%s: %s is too long (%zu bytes, at most %zu)", fn, s->name, n, s->size - 1);
    return -1;
  }
  NAPI_CALL_INT(env, napi_get_value_string_utf8(env, v, buf, s->size, &n));
  if (strlen(buf) != n) {
    throw_type(env, "%s: %s must not contain NUL bytes", fn, s->name);
    return -1;
  }
  return 0;
}

static int read_bytes(napi_env env, const char *fn, const arg_spec *s, napi_value v) {
  bool is_ta = false;
  napi_typedarray_type tt;
  size_t length, offset;
  napi_value ab;
  arg_bytes *out = s->out;
  NAPI_CALL_INT(env, napi_is_typedarray(env, v, &is_ta));
  if (!is_ta) return wrong_type(env, fn, s, "another object");
  NAPI_CALL_INT(env, napi_get_typedarray_info(env, v, &tt, &length, &out->data, &ab, &offset));
  if (tt != napi_uint8_array && tt != napi_uint8_clamped_array) return wrong_type(env, fn, s, "another typed array");
  out->len = length;
  return 0;
}

static int read_value(napi_env env, const char *fn, const arg_spec *s, napi_value v) {
  napi_valuetype t;
  NAPI_CALL_INT(env, napi_typeof(env, v, &t));
  if (t != kind_type(s->kind)) return wrong_type(env, fn, s, type_name(t));
  switch (s->kind) {
    case ARG_INT32:
    case ARG_UINT32: return read_integer(env, fn, s, v);
    case ARG_BOOL: {
      bool b = false;
      NAPI_CALL_INT(env, napi_get_value_bool(env, v, &b));
      *(int *)s->out = b ? 1 : 0;
      return 0;
    }
    case ARG_STRING: return read_string(env, fn, s, v);
    case ARG_BYTES: return read_bytes(env, fn, s, v);
    case ARG_FUNCTION:
    case ARG_OBJECT: *(napi_value *)s->out = v; return 0;
    case ARG_EXTERNAL: {
      bool tagged = false;
      NAPI_CALL_INT(env, napi_check_object_type_tag(env, v, s->tag, &tagged));
      if (!tagged) return wrong_type(env, fn, s, "another external");
      NAPI_CALL_INT(env, napi_get_value_external(env, v, (void **)s->out));
      return 0;
    }
  }
  return 0;
}

int read_args(napi_env env, napi_callback_info info, const char *fn, const arg_spec *specs, size_t n) {
  size_t argc = MAX_ARGS;
  napi_value argv[MAX_ARGS];
  if (n > MAX_ARGS) {
    throw_range(env, "%s: ambient_native reads at most %d arguments", fn, MAX_ARGS);
    return -1;
  }
  NAPI_CALL_INT(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  for (size_t i = 0; i < n; i++) {
    if (i >= argc) {
      char msg[200];
      snprintf(msg, sizeof(msg), "%s: argument %s is missing", fn, specs[i].name);
      if (napi_throw_type_error(env, "ERR_MISSING_ARGS", msg) != napi_ok) napi_fail(env, "napi_throw_type_error");
      return -1;
    }
    if (read_value(env, fn, &specs[i], argv[i]) != 0) return -1;
  }
  return 0;
}

int read_prop(napi_env env, const char *fn, napi_value obj, const char *key, const arg_spec *spec, int *present) {
  napi_value v;
  napi_valuetype t;
  NAPI_CALL_INT(env, napi_get_named_property(env, obj, key, &v));
  NAPI_CALL_INT(env, napi_typeof(env, v, &t));
  *present = !(t == napi_undefined || t == napi_null);
  if (!*present) return 0;
  return read_value(env, fn, spec, v);
}
