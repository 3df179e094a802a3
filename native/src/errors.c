/* Throwing errors: OS errors become NativeError (built by the JS factory), bad arguments
 * TypeError / RangeError, failed Node-API calls ERR_NAPI. */
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "napi_helpers.h"
#include "state.h"

napi_value napi_fail(napi_env env, const char *call) {
  bool pending = false;
  if (napi_is_exception_pending(env, &pending) == napi_ok && pending) return NULL;
  const napi_extended_error_info *info = NULL;
  const char *why = "unknown error";
  if (napi_get_last_error_info(env, &info) == napi_ok && info != NULL && info->error_message != NULL)
    why = info->error_message;
  char msg[400];
  snprintf(msg, sizeof(msg), "Node-API call failed: %s: %s", call, why);
  (void)napi_throw_error(env, "ERR_NAPI", msg); /* nothing is left to report a failure to */
  return NULL;
}

static napi_value throw_fallback(napi_env env, const char *context, const char *text) {
  char msg[800];
  if (text[0] != '\0') snprintf(msg, sizeof(msg), "%s: %s", context, text);
  else snprintf(msg, sizeof(msg), "%s", context);
  (void)napi_throw_error(env, NULL, msg);
  return NULL;
}

static napi_value throw_built(napi_env env, int err, const char *syscall, const char *context, const char *text) {
  addon_state *st = state_peek(env);
  napi_value fn = NULL, argv[4], undef, error;
  /* Before init() registered the factory, or if Node-API fails here, a plain Error still says
   * what happened. */
  if (st == NULL || st->make_error == NULL || napi_get_reference_value(env, st->make_error, &fn) != napi_ok ||
      fn == NULL || napi_create_string_utf8(env, context, NAPI_AUTO_LENGTH, &argv[0]) != napi_ok ||
      napi_create_int32(env, err, &argv[1]) != napi_ok ||
      napi_create_string_utf8(env, syscall, NAPI_AUTO_LENGTH, &argv[2]) != napi_ok ||
      napi_create_string_utf8(env, text, NAPI_AUTO_LENGTH, &argv[3]) != napi_ok ||
      napi_get_undefined(env, &undef) != napi_ok)
    return throw_fallback(env, context, text);
  /* If make_error itself throws, that exception stays pending. */
  if (napi_call_function(env, undef, fn, 4, argv, &error) != napi_ok) return napi_fail(env, "napi_call_function(makeError)");
  if (napi_throw(env, error) != napi_ok) return throw_fallback(env, context, text);
  return NULL;
}

/* Formats the variadic arguments after `fmt` into the array `buf`. */
#define FORMAT(buf, fmt)                     \
  do {                                       \
    va_list ap_;                             \
    va_start(ap_, fmt);                      \
    vsnprintf((buf), sizeof(buf), fmt, ap_); \
    va_end(ap_);                             \
  } while (0)

static napi_value thrown(napi_env env, napi_status s, const char *call) {
  if (s != napi_ok) napi_fail(env, call);
  return NULL;
}

napi_value throw_errno(napi_env env, int err, const char *syscall, const char *fmt, ...) {
  char context[512];
  FORMAT(context, fmt);
  char errbuf[256];
  /* GNU strerror_r returns the message pointer (maybe not errbuf). */
  const char *text = strerror_r(err, errbuf, sizeof(errbuf));
  return throw_built(env, err, syscall, context, text);
}

napi_value throw_plain(napi_env env, int err, const char *syscall, const char *fmt, ...) {
  char context[512];
  FORMAT(context, fmt);
  return throw_built(env, err, syscall, context, "");
}

napi_value throw_type(napi_env env, const char *fmt, ...) {
  char msg[400];
  FORMAT(msg, fmt);
  return thrown(env, napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", msg), "napi_throw_type_error");
}

napi_value throw_range(napi_env env, const char *fmt, ...) {
  char msg[400];
  FORMAT(msg, fmt);
  return thrown(env, napi_throw_range_error(env, "ERR_OUT_OF_RANGE", msg), "napi_throw_range_error");
}
