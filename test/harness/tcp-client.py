# Test client for netns tests (Debian's /usr/bin/python3: Node cannot set SO_MARK).
# usage: tcp-client.py <host> <port> [--mark N] [--source ADDR] [--timeout SECONDS]
# Connects, prints the first line the server sends and exits 0; prints "ERROR <reason>" and
# exits 1 when the connection fails or times out.
import socket
import sys

SO_MARK = 36


def main():
    args = sys.argv[1:]
    if len(args) < 2:
        print("usage: tcp-client.py <host> <port> [--mark N] [--source ADDR] [--timeout S]", file=sys.stderr)
        return 2
    host, port = args[0], int(args[1])
    mark, source, timeout = None, None, 3.0
    rest = args[2:]
    while rest:
        opt, val = rest[0], rest[1]
        rest = rest[2:]
        if opt == "--mark":
            mark = int(val, 0)
        elif opt == "--source":
            source = val
        elif opt == "--timeout":
            timeout = float(val)
        else:
            print("unknown option " + opt, file=sys.stderr)
            return 2
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    s = socket.socket(family, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        if mark is not None:
            s.setsockopt(socket.SOL_SOCKET, SO_MARK, mark)
        if source is not None:
            s.bind((source, 0))
        s.connect((host, port))
        data = b""
        while not data.endswith(b"\n"):
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
        print(data.decode().strip())
        return 0
    except OSError as e:
        print("ERROR " + str(e))
        return 1
    finally:
        s.close()


sys.exit(main())
