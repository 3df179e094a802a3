/* Socket option numbers older libc headers lack (values from the kernel's uapi headers). */
#ifndef AMBIENT_NATIVE_SOCKOPTS_H
#define AMBIENT_NATIVE_SOCKOPTS_H

#include <sys/socket.h>

#ifndef SO_NETNS_COOKIE
#define SO_NETNS_COOKIE 71 /* asm-generic/socket.h, Linux >= 5.14 */
#endif

#endif
