export { FakeIstiod, type FakeIstiodOptions, type RecordedRequest, type CaRequestRecord } from "./server.js";
export { createPki, parseCsr, type FakePki } from "./pki.js";
export { ipBytes, workloadAddress, serviceAddress, type FakeWorkload, type FakeService } from "./resources.js";
export { FakeWaypoint, hboneConnect, workloadCerts, type WaypointRecord, type WaypointCerts } from "./waypoint.js";
