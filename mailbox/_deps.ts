/**
 * @module
 * What the mailbox takes from the shared folders, in one place.
 */

export {
  encodeCommand,
  parseRedisUrl,
  RedisConn,
  type RedisTarget,
  RespError,
  respText,
  type RespValue,
} from "../redis/mod.ts";
export type { Logger } from "../log/mod.ts";
export { silentLogger } from "../log/mod.ts";
export { type Counts, type Gauge, renderMetrics, zeroCounts } from "../metrics/mod.ts";
export { readAtMost } from "../relay/mod.ts";
