// Access logs: the per-connection record and its writer.
export { ACCESS_SCOPE, AccessLog, accessLogger } from "./access-log.js";
export { toAccessRecord, type AccessRecord, type ConnectionSummary, type Direction } from "./record.js";
