// The NBD server's public surface, for `thinp serve` and tests.

export type { ByteRange, ChangeTracker, Eventually, ExportCatalog, ExportListing } from "./catalog.js";
export { DEFAULT_LIMITS, type NbdLimits } from "./limits.js";
export type { NbdLog, NbdLogFields, NbdLogLevel } from "./nbd-log.js";
export { NBD_DEFAULT_PORT, startNbdServer, type NbdServer, type NbdServerAddress, type NbdServerOptions } from "./server.js";
export type { NbdObserver, NbdRequestObserver } from "./nbd-observer.js";
export { commandName } from "./request-validation.js";
export { nbdErrnoName } from "./errno.js";
export { TLS_VERSION_MIN, type NbdTlsCredentials, type NbdTlsMode, type NbdTlsOptions } from "./tls.js";
