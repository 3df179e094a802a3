// Test listener for netns tests: `node tag-server.mjs <tag> <port|host:port>...`
// Listens on every address given (a bare port means dual-stack "::", or 0.0.0.0 when IPv6 is
// off), prints "ready" on stdout once all listen, and answers each connection with one line
// "<tag> <local port> <remote address>" before closing, so a client can tell where it landed.
import net from "node:net";

const [tag, ...addrs] = process.argv.slice(2);
if (!tag || addrs.length === 0) {
  process.stderr.write("usage: tag-server.mjs <tag> <port|host:port>...\n");
  process.exit(2);
}

function parse(a) {
  const i = a.lastIndexOf(":");
  if (i < 0) return { host: undefined, port: Number(a) };
  return { host: a.slice(0, i).replace(/^\[|\]$/g, ""), port: Number(a.slice(i + 1)) };
}

function listen(host, port) {
  return new Promise((resolve, reject) => {
    const server = net.createServer((sock) => {
      sock.on("error", () => {});
      const remote = (sock.remoteAddress ?? "").replace(/^::ffff:/, "");
      sock.end(`${tag} ${sock.localPort} ${remote}\n`);
    });
    server.once("error", reject);
    server.listen({ host, port }, () => resolve(server));
  });
}

for (const a of addrs) {
  const { host, port } = parse(a);
  if (host !== undefined) {
    await listen(host, port);
    continue;
  }
  try {
    await listen("::", port);
  } catch {
    await listen("0.0.0.0", port);
  }
}
process.stdout.write("ready\n");
