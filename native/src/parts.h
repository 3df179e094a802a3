/* The addon's parts: each registers its functions on the module's exports. */
#ifndef AMBIENT_NATIVE_PARTS_H
#define AMBIENT_NATIVE_PARTS_H

#include <node_api.h>

#include "state.h"

napi_status register_netns(napi_env env, napi_value exports);
napi_status register_sockets(napi_env env, napi_value exports);
napi_status register_seqpacket(napi_env env, napi_value exports);
napi_status register_poll(napi_env env, napi_value exports);
napi_status register_splice(napi_env env, napi_value exports);
napi_status register_thread(napi_env env, napi_value exports);
/* Env teardown: closes every poll handle and fd still open (no Node-API calls). */
void poll_teardown(addon_state *st);
/* Env teardown: closes every splice relay still open, resetting its peers. */
void splice_teardown(addon_state *st);

#endif
