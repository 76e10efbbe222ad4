/**
 * Throwaway nats-servers for tests, the bench and the chaos runner: the one implementation is
 * the package's own (src/testing/server.ts, exported by `naq/testing` as `startTestServer`),
 * re-exported here under the names the tests, bench/ and chaos/ use.
 */
export { freePort, killThrowawayNatsServers, startThrowawayNatsServer, type ThrowawayNatsServer, type ThrowawayOptions } from '../../src/testing/server.js';
