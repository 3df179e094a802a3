/* Network namespace handles: open, validate, identity, dup/close, cookie of a netns. */
#include <errno.h>
#include <fcntl.h>
#include <linux/nsfs.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "napi_helpers.h"
#include "netns_switch.h"
#include "parts.h"
#include "sockopts.h"

static const char *ns_type_name(int t) {
  switch (t) {
    case CLONE_NEWNS: return "a mount namespace";
    case CLONE_NEWUTS: return "a UTS namespace";
    case CLONE_NEWIPC: return "an IPC namespace";
    case CLONE_NEWUSER: return "a user namespace";
    case CLONE_NEWPID: return "a PID namespace";
    case CLONE_NEWCGROUP: return "a cgroup namespace";
#ifdef CLONE_NEWTIME
    case CLONE_NEWTIME: return "a time namespace";
#endif
    default: return "another kind of namespace";
  }
}

static const char *file_kind(mode_t m) {
  if (S_ISREG(m)) return "a regular file";
  if (S_ISDIR(m)) return "a directory";
  if (S_ISSOCK(m)) return "a socket";
  if (S_ISFIFO(m)) return "a pipe";
  if (S_ISCHR(m)) return "a character device";
  if (S_ISBLK(m)) return "a block device";
  return "not a namespace file";
}

/* 0 if fd is a network namespace; otherwise throws (naming `what`) and returns -1. */
static int check_netns(napi_env env, int fd, const char *what) {
  int t = ioctl(fd, NS_GET_NSTYPE);
  if (t == CLONE_NEWNET) return 0;
  if (t >= 0) {
    throw_plain(env, EINVAL, "ioctl", "%s is %s, not a network namespace", what, ns_type_name(t));
    return -1;
  }
  int err = errno;
  struct stat sb;
  if (err == EBADF) {
    throw_errno(env, err, "ioctl", "%s is not an open file descriptor", what);
    return -1;
  }
  if (fstat(fd, &sb) == 0) {
    throw_plain(env, EINVAL, "ioctl", "%s is %s, not a network namespace", what, file_kind(sb.st_mode));
  } else {
    throw_errno(env, err, "ioctl", "%s is not a network namespace", what);
  }
  return -1;
}

static napi_value js_netns_open(napi_env env, napi_callback_info info) {
  char path[4096];
  if (READ_ARGS(env, info, "netnsOpen", ARG_STR("path", path)) != 0) return NULL;
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return throw_errno(env, errno, "open", "open netns %s", path);
  if (check_netns(env, fd, path) != 0) {
    close(fd);
    return NULL;
  }
  return make_int(env, fd);
}

static napi_value js_netns_check(napi_env env, napi_callback_info info) {
  int32_t fd;
  if (READ_ARGS(env, info, "netnsCheck", ARG_I32("fd", &fd)) != 0) return NULL;
  char what[64];
  snprintf(what, sizeof(what), "fd %d", fd);
  check_netns(env, fd, what);
  return NULL;
}

static napi_value js_fd_identity(napi_env env, napi_callback_info info) {
  int32_t fd;
  struct stat sb;
  if (READ_ARGS(env, info, "fdIdentity", ARG_I32("fd", &fd)) != 0) return NULL;
  if (fstat(fd, &sb) != 0) return throw_errno(env, errno, "fstat", "fstat fd %d", fd);
  return make_identity(env, (uint64_t)sb.st_dev, (uint64_t)sb.st_ino);
}

static napi_value js_thread_netns_identity(napi_env env, napi_callback_info info) {
  (void)info;
  struct stat sb;
  if (stat("/proc/thread-self/ns/net", &sb) != 0)
    return throw_errno(env, errno, "stat", "stat /proc/thread-self/ns/net");
  return make_identity(env, (uint64_t)sb.st_dev, (uint64_t)sb.st_ino);
}

static napi_value js_dup_fd(napi_env env, napi_callback_info info) {
  int32_t fd;
  if (READ_ARGS(env, info, "dupFd", ARG_I32("fd", &fd)) != 0) return NULL;
  int nfd = fcntl(fd, F_DUPFD_CLOEXEC, 3);
  if (nfd < 0) return throw_errno(env, errno, "fcntl", "dup fd %d", fd);
  return make_int(env, nfd);
}

static napi_value js_close_fd(napi_env env, napi_callback_info info) {
  int32_t fd;
  if (READ_ARGS(env, info, "closeFd", ARG_I32("fd", &fd)) != 0) return NULL;
  /* Linux closes the fd even when close() reports EINTR: never retry. */
  if (close(fd) != 0 && errno != EINTR) return throw_errno(env, errno, "close", "close fd %d", fd);
  return NULL;
}

static napi_value js_netns_cookie_of(napi_env env, napi_callback_info info) {
  int32_t nsfd;
  if (READ_ARGS(env, info, "netnsCookieOf", ARG_I32("netnsFd", &nsfd)) != 0) return NULL;
  addon_state *st = state_get(env);
  if (st == NULL || netns_enter(env, st, nsfd) != 0) return NULL;
  /* A unix socket is the cheapest socket; every socket carries its netns' cookie. */
  int s = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  int err = errno;
  netns_leave(st, nsfd);
  if (s < 0) return throw_errno(env, err, "socket", "socket(AF_UNIX) in netns fd %d", nsfd);
  uint64_t cookie = 0;
  socklen_t len = sizeof(cookie);
  if (getsockopt(s, SOL_SOCKET, SO_NETNS_COOKIE, &cookie, &len) != 0) {
    err = errno;
    close(s);
    return throw_errno(env, err, "getsockopt", "getsockopt SO_NETNS_COOKIE");
  }
  close(s);
  return make_bigint(env, cookie);
}

/* Writes a per-netns sysctl (a name under /proc/sys/net/, e.g. "ipv4/tcp_migrate_req") inside
 * the netns behind netnsFd. /proc/sys/net resolves to the netns of the thread doing the lookup,
 * so the open happens after setns; a few syscalls instead of spawning nsenter + sysctl. */
static napi_value js_netns_write_sysctl(napi_env env, napi_callback_info info) {
  int32_t nsfd;
  char name[256];
  char value[64];
  if (READ_ARGS(env, info, "netnsWriteSysctl", ARG_I32("netnsFd", &nsfd), ARG_STR("name", name),
                ARG_STR("value", value)) != 0)
    return NULL;
  if (name[0] == '\0' || name[0] == '/' || strstr(name, "..") != NULL)
    return throw_plain(env, EINVAL, "sysctl", "sysctl name \"%s\" is not a name under /proc/sys/net", name);
  char path[320];
  snprintf(path, sizeof(path), "/proc/sys/net/%s", name);
  addon_state *st = state_get(env);
  if (st == NULL || netns_enter(env, st, nsfd) != 0) return NULL;
  int fd = open(path, O_WRONLY | O_CLOEXEC);
  int err = errno;
  netns_leave(st, nsfd);
  if (fd < 0) return throw_errno(env, err, "sysctl", "open %s in netns fd %d", path, nsfd);
  size_t len = strlen(value);
  ssize_t n = write(fd, value, len);
  err = errno;
  close(fd);
  if (n < 0) return throw_errno(env, err, "sysctl", "write \"%s\" to %s in netns fd %d", value, path, nsfd);
  if ((size_t)n != len) return throw_plain(env, EIO, "sysctl", "short write to %s in netns fd %d", path, nsfd);
  return NULL;
}

/* Benchmark only: setns into a netns and straight back (cost of one switch pair). */
static napi_value js_bench_setns_round_trip(napi_env env, napi_callback_info info) {
  int32_t nsfd, count;
  if (READ_ARGS(env, info, "benchSetnsRoundTrip", ARG_I32("netnsFd", &nsfd), ARG_I32("count", &count)) != 0)
    return NULL;
  addon_state *st = state_get(env);
  if (st == NULL) return NULL;
  for (int32_t i = 0; i < count; i++) {
    if (netns_enter(env, st, nsfd) != 0) return NULL;
    netns_leave(st, nsfd);
  }
  return NULL;
}

napi_status register_netns(napi_env env, napi_value exports) {
  EXPORT_FN(env, exports, "netnsOpen", js_netns_open);
  EXPORT_FN(env, exports, "netnsCheck", js_netns_check);
  EXPORT_FN(env, exports, "fdIdentity", js_fd_identity);
  EXPORT_FN(env, exports, "threadNetnsIdentity", js_thread_netns_identity);
  EXPORT_FN(env, exports, "dupFd", js_dup_fd);
  EXPORT_FN(env, exports, "closeFd", js_close_fd);
  EXPORT_FN(env, exports, "netnsCookieOf", js_netns_cookie_of);
  EXPORT_FN(env, exports, "netnsWriteSysctl", js_netns_write_sysctl);
  EXPORT_FN(env, exports, "benchSetnsRoundTrip", js_bench_setns_round_trip);
  return napi_ok;
}
