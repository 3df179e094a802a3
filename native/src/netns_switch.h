/* Switching the calling thread into a netns and back (the only place that calls setns). */
#ifndef AMBIENT_NATIVE_NETNS_SWITCH_H
#define AMBIENT_NATIVE_NETNS_SWITCH_H

#include <node_api.h>

#include "state.h"

/* Enters the netns behind nsfd; 0, or -1 after throwing (the thread did not move). */
int netns_enter(napi_env env, addon_state *st, int nsfd);
/* Comes back to the thread's own netns; aborts the process if that fails. */
void netns_leave(addon_state *st, int nsfd);

#endif
