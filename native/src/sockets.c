/* TCP/UDP sockets created inside a netns, their options, SO_ORIGINAL_DST and cookies. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
/* After netinet/in.h, whose definitions the kernel headers then leave alone. */
#include <linux/netfilter_ipv4.h>
#include <linux/netfilter_ipv6/ip6_tables.h>

#include "napi_helpers.h"
#include "netns_switch.h"
#include "parts.h"
#include "sockopts.h"

#define FN "createSocket"

typedef struct socket_spec {
  int family; /* AF_INET / AF_INET6 */
  int tcp;
  int has_mark;
  uint32_t mark;
  int reuse_addr, reuse_port, transparent, freebind, bind_no_port, no_delay;
  int has_v6only, v6only;
  int has_keepalive;
  int32_t ka_idle, ka_intvl, ka_cnt;
  int has_user_timeout;
  uint32_t user_timeout_ms;
  int has_bind;
  char bind_addr[INET6_ADDRSTRLEN + 1];
  struct sockaddr_storage bind_sa;
  socklen_t bind_len;
  int has_listen;
  int32_t backlog;
} socket_spec;

/* An optional property of the spec, checked like an argument; *present = 0 when absent. */
static int opt(napi_env env, napi_value obj, const char *key, arg_spec spec, int *present) {
  return read_prop(env, FN, obj, key, &spec, present);
}

static int opt_bool(napi_env env, napi_value obj, const char *key, const char *name, int *out) {
  int present;
  *out = 0;
  return opt(env, obj, key, (arg_spec)ARG_BOOLEAN(name, out), &present);
}

static int parse_bind(napi_env env, napi_value b, socket_spec *s) {
  int pa, pp;
  int32_t port;
  if (opt(env, b, "address", (arg_spec)ARG_STR("spec.bind.address", s->bind_addr), &pa) != 0 ||
      opt(env, b, "port", (arg_spec)ARG_I32("spec.bind.port", &port), &pp) != 0)
    return -1;
  if (!pa || !pp) {
    throw_type(env, FN ": spec.bind needs address and port");
    return -1;
  }
  if (port < 0 || port > 65535) {
    throw_type(env, FN ": spec.bind.port must be 0..65535");
    return -1;
  }
  int v4 = s->family == AF_INET;
  struct sockaddr_in *sin = (struct sockaddr_in *)&s->bind_sa;
  struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&s->bind_sa;
  if (v4) {
    sin->sin_family = AF_INET;
    sin->sin_port = htons((uint16_t)port);
    s->bind_len = sizeof(*sin);
  } else {
    sin6->sin6_family = AF_INET6;
    sin6->sin6_port = htons((uint16_t)port);
    s->bind_len = sizeof(*sin6);
  }
  if (inet_pton(s->family, s->bind_addr, v4 ? (void *)&sin->sin_addr : (void *)&sin6->sin6_addr) != 1) {
    throw_type(env, FN ": spec.bind.address is not an IPv%d address (family is %d)", v4 ? 4 : 6, v4 ? 4 : 6);
    return -1;
  }
  s->has_bind = 1;
  return 0;
}

static int parse_keepalive(napi_env env, napi_value k, socket_spec *s) {
  int p1, p2, p3;
  if (opt(env, k, "idleSec", (arg_spec)ARG_I32("spec.keepAlive.idleSec", &s->ka_idle), &p1) != 0 ||
      opt(env, k, "intervalSec", (arg_spec)ARG_I32("spec.keepAlive.intervalSec", &s->ka_intvl), &p2) != 0 ||
      opt(env, k, "count", (arg_spec)ARG_I32("spec.keepAlive.count", &s->ka_cnt), &p3) != 0)
    return -1;
  if (!p1 || !p2 || !p3 || s->ka_idle <= 0 || s->ka_intvl <= 0 || s->ka_cnt <= 0) {
    throw_type(env, FN ": spec.keepAlive needs positive idleSec, intervalSec and count");
    return -1;
  }
  s->has_keepalive = 1;
  return 0;
}

/* Parses and validates the whole spec before any netns switch, so nothing can fail while the
 * thread is in the pod's netns except socket() itself. */
static int parse_spec(napi_env env, napi_value obj, socket_spec *s) {
  napi_value v;
  int present;
  int32_t fam = 0;
  char type[8];
  memset(s, 0, sizeof(*s));

  if (opt(env, obj, "family", (arg_spec)ARG_I32("spec.family", &fam), &present) != 0) return -1;
  if (!present || (fam != 4 && fam != 6)) {
    throw_type(env, FN ": spec.family must be 4 or 6");
    return -1;
  }
  s->family = fam == 4 ? AF_INET : AF_INET6;
  if (opt(env, obj, "type", (arg_spec)ARG_STR("spec.type", type), &present) != 0) return -1;
  if (present && strcmp(type, "tcp") == 0) s->tcp = 1;
  else if (!present || strcmp(type, "udp") != 0) {
    throw_type(env, FN ": spec.type must be \"tcp\" or \"udp\"");
    return -1;
  }
  if (opt(env, obj, "mark", (arg_spec)ARG_U32("spec.mark", &s->mark), &s->has_mark) != 0 ||
      opt_bool(env, obj, "reuseAddr", "spec.reuseAddr", &s->reuse_addr) != 0 ||
      opt_bool(env, obj, "reusePort", "spec.reusePort", &s->reuse_port) != 0 ||
      opt_bool(env, obj, "transparent", "spec.transparent", &s->transparent) != 0 ||
      opt_bool(env, obj, "freebind", "spec.freebind", &s->freebind) != 0 ||
      opt_bool(env, obj, "bindAddressNoPort", "spec.bindAddressNoPort", &s->bind_no_port) != 0 ||
      opt_bool(env, obj, "noDelay", "spec.noDelay", &s->no_delay) != 0 ||
      opt(env, obj, "v6Only", (arg_spec)ARG_BOOLEAN("spec.v6Only", &s->v6only), &s->has_v6only) != 0 ||
      opt(env, obj, "userTimeoutMs", (arg_spec)ARG_U32("spec.userTimeoutMs", &s->user_timeout_ms),
          &s->has_user_timeout) != 0)
    return -1;
  if (opt(env, obj, "keepAlive", (arg_spec)ARG_OBJ("spec.keepAlive", &v), &present) != 0) return -1;
  if (present && parse_keepalive(env, v, s) != 0) return -1;
  if (opt(env, obj, "bind", (arg_spec)ARG_OBJ("spec.bind", &v), &present) != 0) return -1;
  if (present && parse_bind(env, v, s) != 0) return -1;
  if (opt(env, obj, "listen", (arg_spec)ARG_OBJ("spec.listen", &v), &present) != 0) return -1;
  if (present) {
    int pb;
    if (!s->tcp) {
      throw_type(env, FN ": spec.listen is only valid for tcp sockets");
      return -1;
    }
    s->backlog = 511;
    if (opt(env, v, "backlog", (arg_spec)ARG_I32("spec.listen.backlog", &s->backlog), &pb) != 0) return -1;
    s->has_listen = 1;
  }
  return 0;
}

static void fmt_endpoint(const socket_spec *s, char *buf, size_t len) {
  int port = s->family == AF_INET ? ntohs(((const struct sockaddr_in *)&s->bind_sa)->sin_port)
                                   : ntohs(((const struct sockaddr_in6 *)&s->bind_sa)->sin6_port);
  if (s->family == AF_INET) snprintf(buf, len, "%s:%d", s->bind_addr, port);
  else snprintf(buf, len, "[%s]:%d", s->bind_addr, port);
}

static int set_int(int fd, int level, int opt, int val) {
  return setsockopt(fd, level, opt, &val, sizeof(val));
}

/* Applies options, bind and listen. On failure throws and returns -1 (caller closes fd). */
static int apply_spec(napi_env env, int fd, const socket_spec *s) {
  int v6 = s->family == AF_INET6;
#define SETOPT(level, opt, val, ctx, ...)                                 \
  if (set_int(fd, level, opt, val) != 0) {                                \
    throw_errno(env, errno, "setsockopt", "setsockopt " ctx, ##__VA_ARGS__); \
    return -1;                                                            \
  }
  if (s->has_mark) SETOPT(SOL_SOCKET, SO_MARK, (int)s->mark, "SO_MARK=0x%x", s->mark);
  if (s->reuse_addr) SETOPT(SOL_SOCKET, SO_REUSEADDR, 1, "SO_REUSEADDR");
  if (s->reuse_port) SETOPT(SOL_SOCKET, SO_REUSEPORT, 1, "SO_REUSEPORT");
  if (v6 && s->has_v6only) SETOPT(IPPROTO_IPV6, IPV6_V6ONLY, s->v6only, "IPV6_V6ONLY");
  if (s->transparent && v6) SETOPT(IPPROTO_IPV6, IPV6_TRANSPARENT, 1, "IPV6_TRANSPARENT");
  if (s->transparent && !v6) SETOPT(IPPROTO_IP, IP_TRANSPARENT, 1, "IP_TRANSPARENT");
  if (s->freebind && v6) SETOPT(IPPROTO_IPV6, IPV6_FREEBIND, 1, "IPV6_FREEBIND");
  if (s->freebind && !v6) SETOPT(IPPROTO_IP, IP_FREEBIND, 1, "IP_FREEBIND");
  /* IP_BIND_ADDRESS_NO_PORT lives at SOL_IP for both families. */
  if (s->bind_no_port) SETOPT(IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1, "IP_BIND_ADDRESS_NO_PORT");
  if (s->tcp) {
    if (s->no_delay) SETOPT(IPPROTO_TCP, TCP_NODELAY, 1, "TCP_NODELAY");
    if (s->has_keepalive) {
      SETOPT(SOL_SOCKET, SO_KEEPALIVE, 1, "SO_KEEPALIVE");
      SETOPT(IPPROTO_TCP, TCP_KEEPIDLE, s->ka_idle, "TCP_KEEPIDLE=%d", s->ka_idle);
      SETOPT(IPPROTO_TCP, TCP_KEEPINTVL, s->ka_intvl, "TCP_KEEPINTVL=%d", s->ka_intvl);
      SETOPT(IPPROTO_TCP, TCP_KEEPCNT, s->ka_cnt, "TCP_KEEPCNT=%d", s->ka_cnt);
    }
    if (s->has_user_timeout)
      SETOPT(IPPROTO_TCP, TCP_USER_TIMEOUT, (int)s->user_timeout_ms, "TCP_USER_TIMEOUT=%u", s->user_timeout_ms);
  }
#undef SETOPT
  char ep[INET6_ADDRSTRLEN + 16];
  if (s->has_bind) {
    if (bind(fd, (const struct sockaddr *)&s->bind_sa, s->bind_len) != 0) {
      fmt_endpoint(s, ep, sizeof(ep));
      throw_errno(env, errno, "bind", "bind %s", ep);
      return -1;
    }
  }
  if (s->has_listen) {
    if (listen(fd, s->backlog) != 0) {
      int err = errno;
      if (s->has_bind) fmt_endpoint(s, ep, sizeof(ep));
      else snprintf(ep, sizeof(ep), "(unbound)");
      throw_errno(env, err, "listen", "listen %s", ep);
      return -1;
    }
  }
  return 0;
}

/* createSocket(netnsFd | -1, spec) -> fd */
static napi_value js_create_socket(napi_env env, napi_callback_info info) {
  int32_t nsfd;
  napi_value spec_v;
  socket_spec spec;
  if (READ_ARGS(env, info, FN, ARG_I32("netnsFd", &nsfd), ARG_OBJ("spec", &spec_v)) != 0) return NULL;
  if (parse_spec(env, spec_v, &spec) != 0) return NULL;
  addon_state *st = state_get(env);
  if (st == NULL) return NULL;
  int type = (spec.tcp ? SOCK_STREAM : SOCK_DGRAM) | SOCK_NONBLOCK | SOCK_CLOEXEC;

  int fd, err;
  if (nsfd >= 0) {
    if (netns_enter(env, st, nsfd) != 0) return NULL;
    /* Only socket() depends on the thread's netns; bind/options use the socket's own. */
    fd = socket(spec.family, type, 0);
    err = errno;
    netns_leave(st, nsfd);
  } else {
    fd = socket(spec.family, type, 0);
    err = errno;
  }
  if (fd < 0)
    return throw_errno(env, err, "socket", "socket(%s, %s)", spec.family == AF_INET ? "AF_INET" : "AF_INET6",
                       spec.tcp ? "SOCK_STREAM" : "SOCK_DGRAM");
  if (apply_spec(env, fd, &spec) != 0) {
    close(fd);
    return NULL;
  }
  return make_int(env, fd);
}

static napi_value js_original_dst(napi_env env, napi_callback_info info) {
  int32_t fd;
  if (READ_ARGS(env, info, "originalDst", ARG_I32("fd", &fd)) != 0) return NULL;
  struct sockaddr_storage local;
  socklen_t len = sizeof(local);
  if (getsockname(fd, (struct sockaddr *)&local, &len) != 0)
    return throw_errno(env, errno, "getsockname", "getsockname fd %d", fd);

  char addr[INET6_ADDRSTRLEN];
  int port, family;
  int v4 = local.ss_family == AF_INET;
  if (local.ss_family == AF_INET6) {
    /* An IPv4 connection accepted on a dual-stack socket is tracked by IPv4 conntrack. */
    v4 = IN6_IS_ADDR_V4MAPPED(&((struct sockaddr_in6 *)&local)->sin6_addr);
  } else if (!v4) {
    return throw_errno(env, EAFNOSUPPORT, "getsockopt", "SO_ORIGINAL_DST on fd %d: not an IP socket", fd);
  }
  /* Both options write a sockaddr of their family; one buffer fits either. */
  struct sockaddr_storage dst;
  len = sizeof(dst);
  if (getsockopt(fd, v4 ? SOL_IP : SOL_IPV6, v4 ? SO_ORIGINAL_DST : IP6T_SO_ORIGINAL_DST, &dst, &len) != 0)
    return throw_errno(env, errno, "getsockopt", "getsockopt %s fd %d",
                       v4 ? "SO_ORIGINAL_DST (IPv4)" : "IP6T_SO_ORIGINAL_DST (IPv6)", fd);
  const struct sockaddr_in *d4 = (const struct sockaddr_in *)&dst;
  const struct sockaddr_in6 *d6 = (const struct sockaddr_in6 *)&dst;
  inet_ntop(v4 ? AF_INET : AF_INET6, v4 ? (const void *)&d4->sin_addr : (const void *)&d6->sin6_addr, addr, sizeof(addr));
  port = ntohs(v4 ? d4->sin_port : d6->sin6_port);
  family = v4 ? 4 : 6;
  napi_value obj, a;
  NAPI_CALL(env, napi_create_object(env, &obj));
  NAPI_CALL(env, napi_create_string_utf8(env, addr, NAPI_AUTO_LENGTH, &a));
  if (set_prop(env, obj, "address", a) != 0 || set_int_prop(env, obj, "port", port) != 0 ||
      set_int_prop(env, obj, "family", family) != 0)
    return NULL;
  return obj;
}

/* fd argument → getsockopt(level, opt) into val; throws (returns -1) with the option's name. */
static int sockopt_of_arg(napi_env env, napi_callback_info info, const char *fn, int level, int opt, const char *optname, void *val, socklen_t size) {
  int32_t fd;
  if (READ_ARGS(env, info, fn, ARG_I32("fd", &fd)) != 0) return -1;
  socklen_t len = size;
  if (getsockopt(fd, level, opt, val, &len) != 0) {
    throw_errno(env, errno, "getsockopt", "getsockopt %s fd %d", optname, fd);
    return -1;
  }
  return 0;
}

static napi_value js_netns_cookie(napi_env env, napi_callback_info info) {
  uint64_t cookie = 0;
  if (sockopt_of_arg(env, info, "netnsCookie", SOL_SOCKET, SO_NETNS_COOKIE, "SO_NETNS_COOKIE", &cookie,
                     sizeof(cookie)) != 0)
    return NULL;
  return make_bigint(env, cookie);
}

static napi_value js_get_socket_mark(napi_env env, napi_callback_info info) {
  uint32_t mark = 0;
  if (sockopt_of_arg(env, info, "getSocketMark", SOL_SOCKET, SO_MARK, "SO_MARK", &mark, sizeof(mark)) != 0)
    return NULL;
  return make_int(env, mark);
}

/* isListening(fd): SO_ACCEPTCONN, so fd helpers can refuse a socket Node would re-listen. */
static napi_value js_is_listening(napi_env env, napi_callback_info info) {
  int v = 0;
  if (sockopt_of_arg(env, info, "isListening", SOL_SOCKET, SO_ACCEPTCONN, "SO_ACCEPTCONN", &v, sizeof(v)) != 0)
    return NULL;
  return make_bool(env, v);
}

napi_status register_sockets(napi_env env, napi_value exports) {
  EXPORT_FN(env, exports, "createSocket", js_create_socket);
  EXPORT_FN(env, exports, "originalDst", js_original_dst);
  EXPORT_FN(env, exports, "netnsCookie", js_netns_cookie);
  EXPORT_FN(env, exports, "getSocketMark", js_get_socket_mark);
  EXPORT_FN(env, exports, "isListening", js_is_listening);
  return napi_ok;
}
