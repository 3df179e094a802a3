/* TCP/UDP sockets created inside a netns, their options, SO_ORIGINAL_DST and cookies. */
#include "common.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#ifndef SO_NETNS_COOKIE
#define SO_NETNS_COOKIE 71
#endif
#ifndef IP_BIND_ADDRESS_NO_PORT
#define IP_BIND_ADDRESS_NO_PORT 24
#endif
/* SO_ORIGINAL_DST (linux/netfilter_ipv4.h) and IP6T_SO_ORIGINAL_DST share the number 80. */
#define ORIGINAL_DST_OPT 80

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

static int opt_bool(napi_env env, napi_value obj, const char *name, int *out) {
  napi_value v;
  int present;
  *out = 0;
  if (prop_get(env, obj, name, &v, &present) != 0) return -1;
  if (!present) return 0;
  return arg_bool(env, v, name, out);
}

/* Parses and validates the whole spec before any netns switch, so nothing can fail while the
 * thread is in the pod's netns except socket() itself. */
static int parse_spec(napi_env env, napi_value obj, socket_spec *s) {
  napi_value v;
  int present;
  int32_t fam;
  char type[8];
  memset(s, 0, sizeof(*s));

  if (prop_get(env, obj, "family", &v, &present) != 0) return -1;
  if (!present) {
    throw_type(env, "spec.family must be 4 or 6");
    return -1;
  }
  if (arg_int32(env, v, "spec.family", &fam) != 0) return -1;
  if (fam != 4 && fam != 6) {
    throw_type(env, "spec.family must be 4 or 6");
    return -1;
  }
  s->family = fam == 4 ? AF_INET : AF_INET6;
  if (prop_get(env, obj, "type", &v, &present) != 0) return -1;
  if (!present) {
    throw_type(env, "spec.type must be \"tcp\" or \"udp\"");
    return -1;
  }
  if (arg_string(env, v, "spec.type", type, sizeof(type)) != 0) return -1;
  if (strcmp(type, "tcp") == 0) s->tcp = 1;
  else if (strcmp(type, "udp") != 0) {
    throw_type(env, "spec.type must be \"tcp\" or \"udp\"");
    return -1;
  }
  if (prop_get(env, obj, "mark", &v, &present) != 0) return -1;
  if (present) {
    if (arg_uint32(env, v, "spec.mark", &s->mark) != 0) return -1;
    s->has_mark = 1;
  }
  if (opt_bool(env, obj, "reuseAddr", &s->reuse_addr) || opt_bool(env, obj, "reusePort", &s->reuse_port) ||
      opt_bool(env, obj, "transparent", &s->transparent) || opt_bool(env, obj, "freebind", &s->freebind) ||
      opt_bool(env, obj, "bindAddressNoPort", &s->bind_no_port) || opt_bool(env, obj, "noDelay", &s->no_delay))
    return -1;
  if (prop_get(env, obj, "v6Only", &v, &present) != 0) return -1;
  if (present) {
    if (arg_bool(env, v, "spec.v6Only", &s->v6only) != 0) return -1;
    s->has_v6only = 1;
  }
  if (prop_get(env, obj, "keepAlive", &v, &present) != 0) return -1;
  if (present) {
    napi_value x;
    int p1, p2, p3;
    if (prop_get(env, v, "idleSec", &x, &p1) || (p1 && arg_int32(env, x, "keepAlive.idleSec", &s->ka_idle)) ||
        prop_get(env, v, "intervalSec", &x, &p2) ||
        (p2 && arg_int32(env, x, "keepAlive.intervalSec", &s->ka_intvl)) ||
        prop_get(env, v, "count", &x, &p3) || (p3 && arg_int32(env, x, "keepAlive.count", &s->ka_cnt)))
      return -1;
    if (!p1 || !p2 || !p3 || s->ka_idle <= 0 || s->ka_intvl <= 0 || s->ka_cnt <= 0) {
      throw_type(env, "spec.keepAlive needs positive idleSec, intervalSec and count");
      return -1;
    }
    s->has_keepalive = 1;
  }
  if (prop_get(env, obj, "userTimeoutMs", &v, &present) != 0) return -1;
  if (present) {
    if (arg_uint32(env, v, "spec.userTimeoutMs", &s->user_timeout_ms) != 0) return -1;
    s->has_user_timeout = 1;
  }
  if (prop_get(env, obj, "bind", &v, &present) != 0) return -1;
  if (present) {
    napi_value a, p;
    int pa, pp;
    int32_t port;
    if (prop_get(env, v, "address", &a, &pa) || prop_get(env, v, "port", &p, &pp)) return -1;
    if (!pa || !pp) {
      throw_type(env, "spec.bind needs address and port");
      return -1;
    }
    if (arg_string(env, a, "spec.bind.address", s->bind_addr, sizeof(s->bind_addr)) ||
        arg_int32(env, p, "spec.bind.port", &port))
      return -1;
    if (port < 0 || port > 65535) {
      throw_type(env, "spec.bind.port must be 0..65535");
      return -1;
    }
    if (s->family == AF_INET) {
      struct sockaddr_in *sin = (struct sockaddr_in *)&s->bind_sa;
      sin->sin_family = AF_INET;
      sin->sin_port = htons((uint16_t)port);
      if (inet_pton(AF_INET, s->bind_addr, &sin->sin_addr) != 1) {
        throw_type(env, "spec.bind.address is not an IPv4 address (family is 4)");
        return -1;
      }
      s->bind_len = sizeof(*sin);
    } else {
      struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&s->bind_sa;
      sin6->sin6_family = AF_INET6;
      sin6->sin6_port = htons((uint16_t)port);
      if (inet_pton(AF_INET6, s->bind_addr, &sin6->sin6_addr) != 1) {
        throw_type(env, "spec.bind.address is not an IPv6 address (family is 6)");
        return -1;
      }
      s->bind_len = sizeof(*sin6);
    }
    s->has_bind = 1;
  }
  if (prop_get(env, obj, "listen", &v, &present) != 0) return -1;
  if (present) {
    napi_value b;
    int pb;
    if (!s->tcp) {
      throw_type(env, "spec.listen is only valid for tcp sockets");
      return -1;
    }
    if (prop_get(env, v, "backlog", &b, &pb)) return -1;
    s->backlog = 511;
    if (pb && arg_int32(env, b, "spec.listen.backlog", &s->backlog)) return -1;
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
  size_t argc = 2;
  napi_value argv[2];
  int32_t nsfd;
  socket_spec spec;
  NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 2 || arg_int32(env, argv[0], "netnsFd", &nsfd) != 0) return NULL;
  if (parse_spec(env, argv[1], &spec) != 0) return NULL;
  addon_state *st = get_state(env);
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
  if (fd_arg(env, info, &fd) != 0) return NULL;
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
  if (v4) {
    struct sockaddr_in dst;
    len = sizeof(dst);
    if (getsockopt(fd, SOL_IP, ORIGINAL_DST_OPT, &dst, &len) != 0)
      return throw_errno(env, errno, "getsockopt", "getsockopt SO_ORIGINAL_DST (IPv4) fd %d", fd);
    inet_ntop(AF_INET, &dst.sin_addr, addr, sizeof(addr));
    port = ntohs(dst.sin_port);
    family = 4;
  } else {
    struct sockaddr_in6 dst;
    len = sizeof(dst);
    if (getsockopt(fd, SOL_IPV6, ORIGINAL_DST_OPT, &dst, &len) != 0)
      return throw_errno(env, errno, "getsockopt", "getsockopt IP6T_SO_ORIGINAL_DST (IPv6) fd %d", fd);
    inet_ntop(AF_INET6, &dst.sin6_addr, addr, sizeof(addr));
    port = ntohs(dst.sin6_port);
    family = 6;
  }
  napi_value obj, a;
  napi_create_object(env, &obj);
  napi_create_string_utf8(env, addr, NAPI_AUTO_LENGTH, &a);
  napi_set_named_property(env, obj, "address", a);
  napi_set_named_property(env, obj, "port", make_int(env, port));
  napi_set_named_property(env, obj, "family", make_int(env, family));
  return obj;
}

/* fd argument → getsockopt(level, opt) into val; throws (returns -1) with the option's name. */
static int sockopt_of_arg(napi_env env, napi_callback_info info, int level, int opt, const char *optname, void *val, socklen_t size) {
  int32_t fd;
  if (fd_arg(env, info, &fd) != 0) return -1;
  socklen_t len = size;
  if (getsockopt(fd, level, opt, val, &len) != 0) {
    throw_errno(env, errno, "getsockopt", "getsockopt %s fd %d", optname, fd);
    return -1;
  }
  return 0;
}

static napi_value js_netns_cookie(napi_env env, napi_callback_info info) {
  uint64_t cookie = 0;
  if (sockopt_of_arg(env, info, SOL_SOCKET, SO_NETNS_COOKIE, "SO_NETNS_COOKIE", &cookie, sizeof(cookie)) != 0) return NULL;
  napi_value r;
  napi_create_bigint_uint64(env, cookie, &r);
  return r;
}

static napi_value js_get_socket_mark(napi_env env, napi_callback_info info) {
  uint32_t mark = 0;
  if (sockopt_of_arg(env, info, SOL_SOCKET, SO_MARK, "SO_MARK", &mark, sizeof(mark)) != 0) return NULL;
  napi_value r;
  napi_create_uint32(env, mark, &r);
  return r;
}

/* isListening(fd): SO_ACCEPTCONN, so fd helpers can refuse a socket Node would re-listen. */
static napi_value js_is_listening(napi_env env, napi_callback_info info) {
  int v = 0;
  if (sockopt_of_arg(env, info, SOL_SOCKET, SO_ACCEPTCONN, "SO_ACCEPTCONN", &v, sizeof(v)) != 0) return NULL;
  napi_value r;
  napi_get_boolean(env, v != 0, &r);
  return r;
}

napi_status register_sockets(napi_env env, napi_value exports) {
  EXPORT_FN(env, exports, "createSocket", js_create_socket);
  EXPORT_FN(env, exports, "originalDst", js_original_dst);
  EXPORT_FN(env, exports, "netnsCookie", js_netns_cookie);
  EXPORT_FN(env, exports, "getSocketMark", js_get_socket_mark);
  EXPORT_FN(env, exports, "isListening", js_is_listening);
  return napi_ok;
}
