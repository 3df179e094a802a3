import { readFileSync, statSync } from "node:fs";
import { credentials, Metadata, type ChannelCredentials, type ChannelOptions } from "@grpc/grpc-js";
import { errorMessage } from "../../shared/errors.js";
import type { GrpcTarget } from "./config.js";
import { XdsError } from "./errors.js";

// What every call to istiod carries (DESIGN §13): `authorization: Bearer <projected token>`,
// `clusterid`, the configured extra headers; and TLS verified against the configured root.

/**
 * The projected service account token, re-read when the file changes (kubelet rotates it by
 * swapping a symlink, so its mtime/inode move). A missing or empty token names the file.
 */
export class TokenFile {
  private cached: { key: string; token: string } | undefined;

  constructor(readonly path: string) {}

  read(): string {
    let key: string;
    try {
      const st = statSync(this.path);
      key = `${st.ino}:${st.mtimeMs}:${st.size}`;
    } catch (err) {
      throw new XdsError("XDS_TOKEN", `istiod token ${this.path} cannot be read: ${errorMessage(err)} (mount the projected token with audience istio-ca there)`, { cause: err });
    }
    if (this.cached?.key === key) return this.cached.token;
    const token = readFileSync(this.path, "utf8").trim();
    if (token === "") throw new XdsError("XDS_TOKEN", `istiod token ${this.path} is empty`);
    this.cached = { key, token };
    return token;
  }
}

export function callMetadata(token: TokenFile, clusterId: string, headers: Readonly<Record<string, string>>, extra: Readonly<Record<string, string>> = {}): Metadata {
  const md = new Metadata();
  for (const [k, v] of Object.entries(headers)) md.set(k, v);
  md.set("authorization", `Bearer ${token.read()}`);
  md.set("clusterid", clusterId);
  for (const [k, v] of Object.entries(extra)) md.set(k, v);
  return md;
}

export interface GrpcChannel {
  readonly creds: ChannelCredentials;
  readonly options: ChannelOptions;
}

/** TLS to istiod, verified against the root file (read now: a bad root stops start-up). */
export function channelFor(target: GrpcTarget, readRoot: (path: string) => Buffer = readFileSync): GrpcChannel {
  let root: Buffer | null = null;
  if (target.rootCaPath !== "SYSTEM") {
    try {
      root = readRoot(target.rootCaPath);
    } catch (err) {
      throw new XdsError("XDS_ROOT_CA", `istiod root certificate ${target.rootCaPath} cannot be read: ${errorMessage(err)} (the istio-ca-root-cert ConfigMap is mounted there)`, {
        cause: err,
      });
    }
    if (!root.toString("utf8").includes("-----BEGIN CERTIFICATE-----")) {
      throw new XdsError("XDS_ROOT_CA", `istiod root certificate ${target.rootCaPath} holds no PEM certificate`);
    }
  }
  return {
    creds: credentials.createSsl(root),
    options: {
      "grpc.ssl_target_name_override": target.serverName,
      "grpc.default_authority": target.serverName,
      // istiod closes idle streams; keepalive notices a dead peer within ~40 s.
      "grpc.keepalive_time_ms": 30_000,
      "grpc.keepalive_timeout_ms": 10_000,
      "grpc.max_receive_message_length": 64 * 1024 * 1024,
    },
  };
}
