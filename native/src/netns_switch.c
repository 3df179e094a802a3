/* The thread's own netns is opened once per environment (= per JS thread) and kept, so a
 * switch costs two setns() calls and no open(). */
#include "netns_switch.h"

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "napi_helpers.h"

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
