// The HBONE client (DESIGN §8), split by role under hbone-client/: types (request, options),
// handshake (TCP + mTLS + identity check), session (HTTP/2 on the secured socket), connection
// (state machine of one pooled connection), connect-stream (CONNECT headers and response), pool.
export { HbonePool } from "./hbone-client/pool.js";
export type { ConnState } from "./hbone-client/connection.js";
export type { CertSource, HboneClientOptions, HboneRequest, HboneStream, HostPort } from "./hbone-client/types.js";
