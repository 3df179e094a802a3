/* Result values; every Node-API status checked (a failure throws and yields NULL / -1). */
#include "napi_helpers.h"

napi_value make_int(napi_env env, int64_t v) {
  napi_value r;
  NAPI_CALL(env, napi_create_int64(env, v, &r));
  return r;
}

napi_value make_bool(napi_env env, int v) {
  napi_value r;
  NAPI_CALL(env, napi_get_boolean(env, v != 0, &r));
  return r;
}

napi_value make_bigint(napi_env env, uint64_t v) {
  napi_value r;
  NAPI_CALL(env, napi_create_bigint_uint64(env, v, &r));
  return r;
}

int set_prop(napi_env env, napi_value obj, const char *key, napi_value v) {
  if (v == NULL) return -1; /* the value's constructor already threw */
  NAPI_CALL_INT(env, napi_set_named_property(env, obj, key, v));
  return 0;
}

int set_int_prop(napi_env env, napi_value obj, const char *key, int64_t v) {
  return set_prop(env, obj, key, make_int(env, v));
}

napi_value make_identity(napi_env env, uint64_t dev, uint64_t ino) {
  napi_value obj;
  NAPI_CALL(env, napi_create_object(env, &obj));
  if (set_prop(env, obj, "dev", make_bigint(env, dev)) != 0 || set_prop(env, obj, "ino", make_bigint(env, ino)) != 0)
    return NULL;
  return obj;
}

napi_status export_fn(napi_env env, napi_value exports, const char *name, napi_callback fn) {
  napi_value f;
  napi_status s = napi_create_function(env, name, NAPI_AUTO_LENGTH, fn, NULL, &f);
  if (s != napi_ok) return s;
  return napi_set_named_property(env, exports, name, f);
}
