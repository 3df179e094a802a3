/* The calling thread's name as the kernel shows it (/proc/<pid>/task/<tid>/comm, top -H, perf):
 * Node 20 names none of its worker threads, so every proxy worker reads "node" and per-thread
 * CPU figures cannot tell them apart. */
#include <errno.h>
#include <sys/prctl.h>

#include "napi_helpers.h"
#include "parts.h"

static napi_value js_set_thread_name(napi_env env, napi_callback_info info) {
  /* The kernel keeps 15 bytes and a NUL; a longer name is refused rather than cut. */
  char name[16];
  if (READ_ARGS(env, info, "setThreadName", ARG_STR("name", name)) != 0) return NULL;
  if (name[0] == '\0') return throw_range(env, "setThreadName: name must not be empty");
  if (prctl(PR_SET_NAME, name, 0, 0, 0) != 0) return throw_errno(env, errno, "prctl", "prctl(PR_SET_NAME, %s)", name);
  return NULL;
}

napi_status register_thread(napi_env env, napi_value exports) {
  EXPORT_FN(env, exports, "setThreadName", js_set_thread_name);
  return napi_ok;
}
