export { FakeIstiod, type FakeIstiodOptions, type RecordedRequest, type CaRequestRecord } from "./server.js";
export { createPki, parseCsr, type FakePki } from "./pki.js";
export { ipBytes, workloadAddress, serviceAddress, type FakeWorkload, type FakeService } from "./resources.js";
