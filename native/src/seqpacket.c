/* AF_UNIX SOCK_SEQPACKET: listen/connect/accept, one datagram + at most one fd per message.
 * All calls are non-blocking; readiness comes from poll.c (uv_poll on the env's loop). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "napi_helpers.h"
#include "parts.h"
#include "state.h"

/* Up to this many fds fit in our control buffer; more arrive as MSG_CTRUNC. */
#define MAX_RECV_FDS 8

typedef struct unix_addr {
  struct sockaddr_un sa;
  socklen_t len;
  int abstract;
  char shown[sizeof(((struct sockaddr_un *)0)->sun_path) + 2]; /* for messages: path or @name */
} unix_addr;

/* Room for the longest name sun_path can hold, plus one byte so a longer one is detected. */
#define NAME_BUF (sizeof(((struct sockaddr_un *)0)->sun_path) + 1)

/* Builds the sockaddr from (name, abstract), both already read. */
static int parse_addr(napi_env env, const char *name, unix_addr *a) {
  size_t n = strlen(name);
  a->sa.sun_family = AF_UNIX;
  if (n == 0) {
    throw_type(env, "unix socket address must not be empty");
    return -1;
  }
  if (a->abstract) {
    if (n > sizeof(a->sa.sun_path) - 1) {
      throw_errno(env, ENAMETOOLONG, "bind", "abstract unix socket name @%s (at most %zu bytes)", name,
                  sizeof(a->sa.sun_path) - 1);
      return -1;
    }
    /* Abstract names are the bytes after a leading NUL, length given by addrlen. */
    memcpy(a->sa.sun_path + 1, name, n);
    a->len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + n);
    snprintf(a->shown, sizeof(a->shown), "@%s", name);
  } else {
    if (n > sizeof(a->sa.sun_path) - 1) {
      throw_errno(env, ENAMETOOLONG, "bind", "unix socket path %s (at most %zu bytes)", name,
                  sizeof(a->sa.sun_path) - 1);
      return -1;
    }
    memcpy(a->sa.sun_path, name, n + 1);
    a->len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n + 1);
    snprintf(a->shown, sizeof(a->shown), "%s", name);
  }
  return 0;
}

/* seqListen(name, abstract, backlog, mode | -1) -> fd */
static napi_value js_seq_listen(napi_env env, napi_callback_info info) {
  unix_addr a;
  char name[NAME_BUF];
  int32_t backlog, mode;
  memset(&a, 0, sizeof(a));
  if (READ_ARGS(env, info, "seqListen", ARG_STR("name", name), ARG_BOOLEAN("abstract", &a.abstract),
                ARG_I32("backlog", &backlog), ARG_I32("mode", &mode)) != 0 ||
      parse_addr(env, name, &a) != 0)
    return NULL;
  int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return throw_errno(env, errno, "socket", "socket(AF_UNIX, SOCK_SEQPACKET)");
  /* A stale or live socket file at the path is the caller's business: bind fails with
   * EADDRINUSE and we never unlink what we did not create. */
  if (bind(fd, (const struct sockaddr *)&a.sa, a.len) != 0) {
    int err = errno;
    close(fd);
    return throw_errno(env, err, "bind", "listen on unix seqpacket socket %s", a.shown);
  }
  if (!a.abstract && mode >= 0 && chmod(a.sa.sun_path, (mode_t)mode) != 0) {
    int err = errno;
    close(fd);
    unlink(a.sa.sun_path);
    return throw_errno(env, err, "chmod", "chmod %o %s", (unsigned)mode, a.shown);
  }
  if (listen(fd, backlog) != 0) {
    int err = errno;
    close(fd);
    if (!a.abstract) unlink(a.sa.sun_path);
    return throw_errno(env, err, "listen", "listen on unix seqpacket socket %s", a.shown);
  }
  return make_int(env, fd);
}

/* seqConnect(name, abstract) -> fd, or -1 when the listener's backlog is full (retry later). */
static napi_value js_seq_connect(napi_env env, napi_callback_info info) {
  unix_addr a;
  char name[NAME_BUF];
  memset(&a, 0, sizeof(a));
  if (READ_ARGS(env, info, "seqConnect", ARG_STR("name", name), ARG_BOOLEAN("abstract", &a.abstract)) != 0 ||
      parse_addr(env, name, &a) != 0)
    return NULL;
  int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return throw_errno(env, errno, "socket", "socket(AF_UNIX, SOCK_SEQPACKET)");
  int rc;
  do {
    rc = connect(fd, (const struct sockaddr *)&a.sa, a.len);
  } while (rc != 0 && errno == EINTR);
  if (rc != 0) {
    int err = errno;
    close(fd);
    if (err == EAGAIN) return make_int(env, -1);
    return throw_errno(env, err, "connect", "connect to unix seqpacket socket %s", a.shown);
  }
  return make_int(env, fd);
}

/* seqAccept(fd) -> fd, or -1 when nothing is pending */
static napi_value js_seq_accept(napi_env env, napi_callback_info info) {
  int32_t fd;
  if (READ_ARGS(env, info, "seqAccept", ARG_I32("fd", &fd)) != 0) return NULL;
  for (;;) {
    int c = accept4(fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (c >= 0) return make_int(env, c);
    if (errno == EINTR || errno == ECONNABORTED) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) return make_int(env, -1);
    return throw_errno(env, errno, "accept", "accept on unix seqpacket socket fd %d", fd);
  }
}

/* seqSend(fd, data, passFd | -1) -> true when sent, false on EAGAIN (poll for writable). */
static napi_value js_seq_send(napi_env env, napi_callback_info info) {
  int32_t fd, pass;
  arg_bytes data;
  if (READ_ARGS(env, info, "seqSend", ARG_I32("fd", &fd), ARG_U8("data", &data), ARG_I32("passFd", &pass)) != 0)
    return NULL;
  size_t len = data.len;
  struct iovec iov = {.iov_base = data.data, .iov_len = len};
  union {
    char buf[CMSG_SPACE(sizeof(int))];
    struct cmsghdr align;
  } ctrl;
  struct msghdr msg;
  memset(&msg, 0, sizeof(msg));
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  if (pass >= 0) {
    memset(&ctrl, 0, sizeof(ctrl));
    msg.msg_control = ctrl.buf;
    msg.msg_controllen = sizeof(ctrl.buf);
    struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(c), &pass, sizeof(int));
  }
  ssize_t n;
  do {
    n = sendmsg(fd, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
  } while (n < 0 && errno == EINTR);
  if (n < 0) {
    if (errno == EAGAIN || errno == EWOULDBLOCK) return make_bool(env, 0);
    if (pass >= 0) return throw_errno(env, errno, "sendmsg", "sendmsg (%zu bytes + fd %d)", len, pass);
    return throw_errno(env, errno, "sendmsg", "sendmsg (%zu bytes)", len);
  }
  return make_bool(env, 1);
}

/* { data, fds, truncated, controlTruncated }, or NULL after throwing. */
static napi_value datagram_value(napi_env env, const char *data, size_t n, const int *fds, int nfds, int trunc,
                                 int ctrunc) {
  napi_value obj, buf, arr;
  void *copy;
  if (napi_create_buffer_copy(env, n, data, &copy, &buf) != napi_ok) {
    napi_fail(env, "napi_create_buffer_copy (received datagram)");
    return NULL;
  }
  NAPI_CALL(env, napi_create_object(env, &obj));
  NAPI_CALL(env, napi_create_array_with_length(env, (size_t)nfds, &arr));
  for (int i = 0; i < nfds; i++) {
    napi_value v = make_int(env, fds[i]);
    if (v == NULL) return NULL;
    NAPI_CALL(env, napi_set_element(env, arr, (uint32_t)i, v));
  }
  if (set_prop(env, obj, "data", buf) != 0 || set_prop(env, obj, "fds", arr) != 0 ||
      set_prop(env, obj, "truncated", make_bool(env, trunc)) != 0 ||
      set_prop(env, obj, "controlTruncated", make_bool(env, ctrunc)) != 0)
    return NULL;
  return obj;
}

/* seqRecv(fd, maxDatagram) -> undefined (nothing pending), null (EOF), or
 * { data: Buffer, fds: number[], truncated: boolean, controlTruncated: boolean }.
 * Received fds are close-on-exec and owned by the caller, whatever the flags say. */
static napi_value js_seq_recv(napi_env env, napi_callback_info info) {
  int32_t fd, max;
  if (READ_ARGS(env, info, "seqRecv", ARG_I32("fd", &fd), ARG_I32("maxDatagram", &max)) != 0) return NULL;
  if (max <= 0) return throw_range(env, "seqRecv: maxDatagram must be positive (got %d)", max);
  addon_state *st = state_get(env);
  if (st == NULL) return NULL;
  if (st->scratch_len < (size_t)max) {
    char *p = realloc(st->scratch, (size_t)max);
    if (p == NULL) return throw_errno(env, ENOMEM, "recvmsg", "receive buffer of %d bytes", max);
    st->scratch = p;
    st->scratch_len = (size_t)max;
  }
  struct iovec iov = {.iov_base = st->scratch, .iov_len = (size_t)max};
  union {
    char buf[CMSG_SPACE(sizeof(int) * MAX_RECV_FDS)];
    struct cmsghdr align;
  } ctrl;
  struct msghdr msg;
  memset(&msg, 0, sizeof(msg));
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = ctrl.buf;
  msg.msg_controllen = sizeof(ctrl.buf);
  ssize_t n;
  do {
    n = recvmsg(fd, &msg, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
  } while (n < 0 && errno == EINTR);
  if (n < 0) {
    if (errno == EAGAIN || errno == EWOULDBLOCK) return NULL; /* undefined */
    return throw_errno(env, errno, "recvmsg", "recvmsg on unix seqpacket socket fd %d", fd);
  }
  int fds[MAX_RECV_FDS];
  int nfds = 0;
  for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c != NULL; c = CMSG_NXTHDR(&msg, c)) {
    if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
    size_t k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    for (size_t i = 0; i < k && nfds < MAX_RECV_FDS; i++) memcpy(&fds[nfds++], CMSG_DATA(c) + i * sizeof(int), sizeof(int));
  }
  int trunc = (msg.msg_flags & MSG_TRUNC) != 0;
  int ctrunc = (msg.msg_flags & MSG_CTRUNC) != 0;
  if (n == 0 && nfds == 0 && !trunc && !ctrunc) {
    /* Our protocols never send empty datagrams (send() refuses them), so 0 means EOF. */
    napi_value nul;
    NAPI_CALL(env, napi_get_null(env, &nul));
    return nul;
  }
  napi_value obj = datagram_value(env, st->scratch, (size_t)n, fds, nfds, trunc, ctrunc);
  /* The fds are the caller's once they are in the result; until then they are ours to close. */
  if (obj == NULL)
    for (int i = 0; i < nfds; i++) close(fds[i]);
  return obj;
}

static napi_value js_peer_cred(napi_env env, napi_callback_info info) {
  int32_t fd;
  if (READ_ARGS(env, info, "peerCred", ARG_I32("fd", &fd)) != 0) return NULL;
  struct ucred cred;
  socklen_t len = sizeof(cred);
  if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0)
    return throw_errno(env, errno, "getsockopt", "getsockopt SO_PEERCRED fd %d", fd);
  napi_value obj;
  NAPI_CALL(env, napi_create_object(env, &obj));
  if (set_int_prop(env, obj, "pid", cred.pid) != 0 || set_int_prop(env, obj, "uid", cred.uid) != 0 ||
      set_int_prop(env, obj, "gid", cred.gid) != 0)
    return NULL;
  return obj;
}

napi_status register_seqpacket(napi_env env, napi_value exports) {
  EXPORT_FN(env, exports, "seqListen", js_seq_listen);
  EXPORT_FN(env, exports, "seqConnect", js_seq_connect);
  EXPORT_FN(env, exports, "seqAccept", js_seq_accept);
  EXPORT_FN(env, exports, "seqSend", js_seq_send);
  EXPORT_FN(env, exports, "seqRecv", js_seq_recv);
  EXPORT_FN(env, exports, "peerCred", js_peer_cred);
  return napi_ok;
}
