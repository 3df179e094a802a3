import protobuf from "protobufjs";

/**
 * Our .proto for Istio's ZDS (package istio.workload.zds), written from DESIGN §4. Field
 * numbers are Istio's and must never change: Istio's ztunnel and istio-cni speak them.
 * Embedded as a string so it is found from both src/ (vitest) and dist/ (tsc copies no .proto).
 */
export const ZDS_PROTO = `
syntax = "proto3";
package istio.workload.zds;

enum Version {
  NOT_USED = 0;
  V1 = 1;
}

message ZdsHello {
  Version version = 1;
}

message WorkloadInfo {
  reserved 4;
  string name = 1;
  string namespace = 2;
  string service_account = 3;
}

message AddWorkload {
  string uid = 1;
  WorkloadInfo workload_info = 2;
}

message KeepWorkload {
  string uid = 1;
}

message DelWorkload {
  string uid = 2;
}

message SnapshotSent {
}

message Ack {
  string error = 1;
}

message WorkloadRequest {
  oneof payload {
    AddWorkload add = 1;
    DelWorkload del = 2;
    SnapshotSent snapshot_sent = 3;
    KeepWorkload keep = 5;
  }
}

message WorkloadResponse {
  oneof payload {
    Ack ack = 1;
  }
}
`;

// keepCase: field names exactly as in the .proto (workload_info, snapshot_sent).
const root = protobuf.parse(ZDS_PROTO, { keepCase: true }).root;
root.resolveAll();

export const HelloType = root.lookupType("istio.workload.zds.ZdsHello");
export const RequestType = root.lookupType("istio.workload.zds.WorkloadRequest");
export const ResponseType = root.lookupType("istio.workload.zds.WorkloadResponse");
export const VERSION_V1 = 1;
