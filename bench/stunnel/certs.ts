import { execFile } from "node:child_process";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { promisify } from "node:util";

const exec = promisify(execFile);

// Per-run PKI for the stunnel reference: a throwaway root and one leaf per side, all ECDSA
// P-256 like HBONE's certificates, made with openssl in the run's temp dir.

export interface StunnelPki {
  caFile: string;
  server: { certFile: string; keyFile: string };
  client: { certFile: string; keyFile: string };
}

async function openssl(args: string[]): Promise<void> {
  await exec("openssl", args, { timeout: 30_000 });
}

async function leaf(dir: string, name: string, caCert: string, caKey: string): Promise<{ certFile: string; keyFile: string }> {
  const keyFile = join(dir, `${name}.key`);
  const csr = join(dir, `${name}.csr`);
  const certFile = join(dir, `${name}.pem`);
  const ext = join(dir, `${name}.ext`);
  await writeFile(ext, "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth,clientAuth\n");
  await openssl(["req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", keyFile, "-out", csr, "-subj", `/CN=bench-${name}`]);
  await openssl(["x509", "-req", "-in", csr, "-CA", caCert, "-CAkey", caKey, "-CAcreateserial", "-days", "2", "-out", certFile, "-extfile", ext]);
  return { certFile, keyFile };
}

export async function makeStunnelPki(dir: string): Promise<StunnelPki> {
  const caKey = join(dir, "ca.key");
  const caFile = join(dir, "ca.pem");
  await openssl([
    "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", caKey, "-out", caFile,
    "-days", "2", "-subj", "/CN=bench-stunnel-root",
    "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign",
  ]);
  return { caFile, server: await leaf(dir, "server", caFile, caKey), client: await leaf(dir, "client", caFile, caKey) };
}
