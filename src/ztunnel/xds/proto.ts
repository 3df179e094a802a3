import { existsSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import protobuf from "protobufjs";
import { AmbientError } from "../../shared/errors.js";

// The protobuf schemas in proto/ (DESIGN §13), loaded once with protobufjs. The directory is
// found by walking up from this module, so the same code works from src/ (tests) and from
// dist/src/ (the build and the image, which ships proto/ next to dist/).

export class ProtoLoadError extends AmbientError {
  constructor(message: string, cause?: unknown) {
    super("XDS_PROTO_LOAD", message, cause === undefined ? undefined : { cause });
  }
}

const FILES = [
  "envoy/service/discovery/v3/discovery.proto",
  "istio/workload/workload.proto",
  "istio/security/authorization.proto",
  "istio/ca/ca.proto",
] as const;

export const ADDRESS_TYPE_URL = "type.googleapis.com/istio.workload.Address";
export const AUTHORIZATION_TYPE_URL = "type.googleapis.com/istio.security.Authorization";
export const ADS_METHOD = "/envoy.service.discovery.v3.AggregatedDiscoveryService/DeltaAggregatedResources";
export const CA_METHOD = "/istio.v1.auth.IstioCertificateService/CreateCertificate";

export interface XdsTypes {
  readonly root: protobuf.Root;
  readonly deltaRequest: protobuf.Type;
  readonly deltaResponse: protobuf.Type;
  readonly address: protobuf.Type;
  readonly authorization: protobuf.Type;
  readonly caRequest: protobuf.Type;
  readonly caResponse: protobuf.Type;
}

let cached: XdsTypes | undefined;

/** The proto/ directory of this installation. */
export function protoDir(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 6; i++) {
    const candidate = join(dir, "proto");
    if (existsSync(join(candidate, FILES[0]))) return candidate;
    dir = dirname(dir);
  }
  throw new ProtoLoadError(`proto/ (with ${FILES[0]}) not found above ${dirname(fileURLToPath(import.meta.url))}: the installation must ship proto/ next to dist/`);
}

export function xdsTypes(): XdsTypes {
  if (cached !== undefined) return cached;
  const dir = protoDir();
  const root = new protobuf.Root();
  root.resolvePath = (_origin, target) => resolve(dir, target);
  try {
    root.loadSync([...FILES], { keepCase: true });
    root.resolveAll();
  } catch (err) {
    throw new ProtoLoadError(`loading the xDS schemas from ${dir} failed: ${(err as Error).message}`, err);
  }
  cached = {
    root,
    deltaRequest: root.lookupType("envoy.service.discovery.v3.DeltaDiscoveryRequest"),
    deltaResponse: root.lookupType("envoy.service.discovery.v3.DeltaDiscoveryResponse"),
    address: root.lookupType("istio.workload.Address"),
    authorization: root.lookupType("istio.security.Authorization"),
    caRequest: root.lookupType("istio.v1.auth.IstioCertificateRequest"),
    caResponse: root.lookupType("istio.v1.auth.IstioCertificateResponse"),
  };
  return cached;
}

/** Decoded as plain objects: enums as names, 64-bit integers as numbers, oneofs named. */
const TO_OBJECT: protobuf.IConversionOptions = { enums: String, longs: Number, bytes: Buffer, defaults: false, arrays: true, objects: true, oneofs: true };

/** Decodes bytes as `type` into a plain object (throws on malformed wire data). */
export function decodeAs(type: protobuf.Type, bytes: Uint8Array): Record<string, unknown> {
  return type.toObject(type.decode(bytes), TO_OBJECT) as Record<string, unknown>;
}

/** Encodes a plain object (snake_case keys, enum names or numbers) as `type`. */
export function encodeAs(type: protobuf.Type, obj: Record<string, unknown>): Buffer {
  let msg: protobuf.Message;
  try {
    msg = type.fromObject(obj);
  } catch (err) {
    throw new ProtoLoadError(`${type.fullName}: ${(err as Error).message}`, err);
  }
  return Buffer.from(type.encode(msg).finish());
}
