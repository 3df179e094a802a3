# Test listener reporting SO_ORIGINAL_DST (what a REDIRECT rule rewrote), for Debian's /usr/bin/python3.
# usage: origdst-server.py <port>   Listens dual-stack, prints "ready", answers each connection
# with one line "<original dst address> <original dst port>" and closes it.
import socket
import struct
import sys

SO_ORIGINAL_DST = 80
SOL_IP = 0
SOL_IPV6 = 41


def original_dst(conn):
    local = conn.getsockname()[0]
    if local.startswith("::ffff:") or ":" not in local:
        raw = conn.getsockopt(SOL_IP, SO_ORIGINAL_DST, 16)
        port, addr = struct.unpack_from("!H4s", raw, 2)
        return socket.inet_ntop(socket.AF_INET, addr), port
    raw = conn.getsockopt(SOL_IPV6, SO_ORIGINAL_DST, 28)
    port = struct.unpack_from("!H", raw, 2)[0]
    return socket.inet_ntop(socket.AF_INET6, raw[8:24]), port


def main():
    port = int(sys.argv[1])
    srv = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    srv.bind(("::", port))
    srv.listen(16)
    print("ready", flush=True)
    while True:
        conn, _ = srv.accept()
        try:
            addr, p = original_dst(conn)
            conn.sendall(("%s %d\n" % (addr, p)).encode())
        except OSError as e:
            conn.sendall(("ERROR %s\n" % e).encode())
        finally:
            conn.close()


main()
