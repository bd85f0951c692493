/**
 * @module
 * The Redis client shared by the instance mesh and the stores: a RESP2 codec
 * ({@link RespParser}, {@link encodeCommand}), a reconnecting connection
 * ({@link RedisConn}) and the `redis://` / `rediss://` URL form
 * ({@link parseRedisUrl}). Our own rather than `ioredis`/`redis`: a few
 * commands over RESP2, measured faster here (bench/README.md).
 */

export {
  bulkLen,
  decimalLen,
  DEFAULT_MAX_REPLY_BYTES,
  encodeCommand,
  MAX_ARRAY_LEN,
  MAX_BULK_LEN,
  OutBuffer,
  parseRedisUrl,
  type RedisTarget,
  RespError,
  RespParser,
  respText,
  type RespValue,
  writeArrayHeader,
  writeBulkHeader,
  writeDecimal,
} from "./resp.ts";
export {
  REDIS_BACKOFF_MAX_MS,
  REDIS_BACKOFF_MIN_MS,
  REDIS_HEALTHY_MS,
  RedisConn,
  type RedisConnOptions,
} from "./conn.ts";
