/**
 * @module
 * The instance mesh over Redis pub/sub: the backend for self-hosted
 * scale-out (several relay processes or hosts behind one relay URL, one
 * Redis they all reach).
 *
 * Routing is Redis's own: each instance subscribes to one channel per key
 * it holds, `<prefix>:k:<key hex>`, so a PUBLISH on the destination's
 * channel reaches exactly the instance holding it, and no directory has to
 * be kept consistent. PUBLISH answers with the number of receivers; 0 means
 * the key is connected nowhere (counted as `unrouted`).
 *
 * - `claim(key)`: PUBLISH a `claimed` notice on the key's channel (an older
 *   holder then closes its connection: the newer one wins, as for
 *   duplicates on one instance), then SUBSCRIBE. The notice carries our
 *   instance id, so our own notice echoed back is ignored.
 * - `release(key)`: UNSUBSCRIBE.
 * - `forward`, `gone`: PUBLISH a datagram or gone message (`codec.ts`:
 *   one tag byte and fixed fields, binary-safe) on the destination's channel.
 *
 * Two connections ({@link RedisConn}): one publishes (PUBLISH replies are
 * matched to what was sent, in order), one is in subscriber mode. The relay's
 * hot path only appends to an output buffer: `forward` never blocks, awaits
 * or throws. While Redis is unreachable, PUBLISHes wait in a bounded buffer
 * (default 1 MiB; beyond it they are dropped and counted as `overflow`);
 * after a reconnect the subscriber connection subscribes again to every key
 * held at that moment. Notices lost in an outage are not replayed: two
 * instances may then both hold a key until one of its connections ends
 * (datagrams for it reach both; the one without the client drops them).
 * The same can happen when one key connects to two instances within about
 * a millisecond (each claimed notice reaches Redis before the other
 * instance's SUBSCRIBE); in-order delivery by Redis settles every later
 * claim.
 *
 * Redis pub/sub channels are server-wide: the database number of the URL
 * does not separate relays sharing one Redis; a distinct `channel_prefix`
 * does.
 *
 * Measured on the 2-core test machine (loopback Redis 7.0, `deno task
 * bench --only=mesh`): a datagram crossing instances gains about 0.25–0.3 ms
 * at the median over forwarding within one instance.
 */

import { type Logger, silentLogger } from "../log/mod.ts";
import { type InstanceMesh, KEY_LEN, keyId, type MeshSink } from "../relay/mod.ts";
import {
  dispatchMesh,
  encodeMeshClaimed,
  encodeMeshGone,
  MAX_INSTANCE_ID_LEN,
  MESH_DATAGRAM_HEADER_LEN,
  writeMeshDatagram,
} from "./codec.ts";
import { RedisConn } from "../redis/mod.ts";
import {
  bulkLen,
  encodeCommand,
  type RedisTarget,
  RespError,
  respText,
  type RespValue,
  writeBulkHeader,
} from "../redis/mod.ts";

/** Options of {@link RedisMesh}. */
export interface RedisMeshOptions {
  /** Server and credentials (`parseRedisUrl`). */
  target: RedisTarget;
  /** Channel name prefix: relays sharing one Redis need distinct ones. Default `iroh-relay`. */
  prefix?: string;
  /** This instance's id in claimed notices. Default: 16 random hex digits. */
  instanceId?: string;
  /** Logger. */
  log?: Logger;
  /** Cap of the PUBLISH buffer while Redis is slow or unreachable, bytes. Default 1 MiB. */
  maxBufferBytes?: number;
  /** Deadline of a connection attempt, ms. Default 3000. */
  connectTimeoutMs?: number;
}

/** Backend counters, exported as metrics by `open.ts`. */
export interface RedisMeshStats {
  /** Datagrams PUBLISHed that no instance was subscribed for (key connected nowhere). */
  unrouted: number;
  /** Messages dropped because the PUBLISH buffer was full (Redis slow or unreachable). */
  overflow: number;
  /** Received messages that did not decode. */
  malformed: number;
  /** Error replies from Redis. */
  errors: number;
  /** Reconnections of either connection. */
  reconnects: number;
}

/** Default PUBLISH buffer cap, bytes: about 800 full-size datagrams, a second or two of a busy relay. */
export const DEFAULT_MESH_BUFFER_BYTES = 1024 * 1024;
/** Cap of the subscriber connection's buffer, bytes: a full resubscription of 300k keys fits. */
const SUB_BUFFER_BYTES = 32 * 1024 * 1024;
/** Channels per SUBSCRIBE when resubscribing after a reconnect. */
const SUBSCRIBE_BATCH = 512;
/** How long `close` waits for the last notices (EndpointGone of the keys it drops) to go out, ms. */
const CLOSE_DRAIN_MS = 500;

/** What a PUBLISH reply answers, so a 0 receivers count means something only for datagrams. */
const TAG_DATAGRAM = 1;
const TAG_NOTICE = 2;
const TAG_PING = 3;

const PUBLISH_HEAD = new TextEncoder().encode("*3\r\n$7\r\nPUBLISH\r\n");
const HEX = new TextEncoder().encode("0123456789abcdef");
const CR = 13;
const LF = 10;
const enc = new TextEncoder();

/** A FIFO of small integers (reply tags), without `Array.shift`'s O(n). */
class TagQueue {
  #a = new Uint8Array(1024);
  #head = 0;
  #len = 0;

  push(tag: number): void {
    if (this.#len === this.#a.length) {
      const grown = new Uint8Array(this.#a.length * 2);
      for (let i = 0; i < this.#len; i++) grown[i] = this.#a[(this.#head + i) % this.#a.length]!;
      this.#a = grown;
      this.#head = 0;
    }
    this.#a[(this.#head + this.#len) % this.#a.length] = tag;
    this.#len++;
  }

  shift(): number {
    if (this.#len === 0) return 0;
    const t = this.#a[this.#head]!;
    this.#head = (this.#head + 1) % this.#a.length;
    this.#len--;
    return t;
  }

  clear(): void {
    this.#head = 0;
    this.#len = 0;
  }
}

function randomId(): string {
  return Array.from(crypto.getRandomValues(new Uint8Array(8)), (b) => b.toString(16).padStart(2, "0")).join("");
}

/** See the module doc. */
export class RedisMesh implements InstanceMesh {
  /** Backend name. */
  readonly kind = "redis";
  /** This instance's id. */
  readonly instanceId: string;
  /** Counters. */
  readonly stats: RedisMeshStats = { unrouted: 0, overflow: 0, malformed: 0, errors: 0, reconnects: 0 };
  readonly #log: Logger;
  readonly #pub: RedisConn;
  readonly #sub: RedisConn;
  readonly #self: Uint8Array;
  /** `<prefix>:k:` */
  readonly #chan: Uint8Array;
  /** Keys held here, by key id. Owned by claim/release; read on resubscription. */
  readonly #held = new Map<string, Uint8Array>();
  readonly #expect = new TagQueue();
  #sink: MeshSink | null = null;
  #lastErrorLog = -Infinity;

  /** @param opts see {@link RedisMeshOptions} */
  constructor(opts: RedisMeshOptions) {
    this.instanceId = opts.instanceId ?? randomId();
    this.#self = enc.encode(this.instanceId);
    if (this.#self.length === 0 || this.#self.length > MAX_INSTANCE_ID_LEN) {
      throw new RangeError(`Instance id must be 1 to ${MAX_INSTANCE_ID_LEN} bytes: "${this.instanceId}"`);
    }
    this.#chan = enc.encode(`${opts.prefix ?? "iroh-relay"}:k:`);
    this.#log = opts.log ?? silentLogger;
    const common = {
      target: opts.target,
      log: this.#log,
      ...(opts.connectTimeoutMs !== undefined ? { connectTimeoutMs: opts.connectTimeoutMs } : {}),
    };
    this.#pub = new RedisConn({
      ...common,
      name: "mesh redis (publish)",
      maxBufferBytes: opts.maxBufferBytes ?? DEFAULT_MESH_BUFFER_BYTES,
      onReply: (v) => this.#onPubReply(v),
      onUp: () => this.#countReconnects(),
      onDown: () => this.#expect.clear(),
      onIdle: () => this.#command(this.#pub, ["PING"], TAG_PING),
    });
    this.#sub = new RedisConn({
      ...common,
      name: "mesh redis (subscribe)",
      maxBufferBytes: SUB_BUFFER_BYTES,
      onReply: (v) => this.#onPush(v),
      onUp: () => this.#resubscribe(),
      onDown: () => {},
      onIdle: () => this.#command(this.#sub, ["PING"], 0),
    });
  }

  /** Connects both links; rejects if Redis cannot be reached or refuses AUTH. */
  async start(sink: MeshSink): Promise<void> {
    this.#sink = sink;
    const results = await Promise.allSettled([this.#pub.start(), this.#sub.start()]);
    const failed = results.find((r) => r.status === "rejected") as PromiseRejectedResult | undefined;
    if (failed) {
      await Promise.all([this.#pub.close(), this.#sub.close()]);
      throw failed.reason;
    }
  }

  claim(key: Uint8Array): void {
    const k = key.slice(0, KEY_LEN);
    this.#held.set(keyId(k), k);
    this.#publish(k, encodeMeshClaimed(k, this.#self), TAG_NOTICE);
    // While the subscriber link is down, the resubscription after reconnecting covers this key.
    if (this.#sub.up) this.#command(this.#sub, ["SUBSCRIBE", this.#channel(k)], 0);
  }

  release(key: Uint8Array): void {
    const k = key.subarray(0, KEY_LEN);
    if (!this.#held.delete(keyId(k))) return;
    if (this.#sub.up) this.#command(this.#sub, ["UNSUBSCRIBE", this.#channel(k)], 0);
  }

  forward(dst: Uint8Array, src: Uint8Array, ecn: number, segmentSize: number, contents: Uint8Array): void {
    // Hot path: the PUBLISH is written straight into the output buffer, with no intermediate message.
    const msgLen = MESH_DATAGRAM_HEADER_LEN + contents.length;
    const chanLen = this.#chan.length + 2 * KEY_LEN;
    const total = PUBLISH_HEAD.length + bulkLen(chanLen) + bulkLen(msgLen);
    const out = this.#pub.out;
    if (!out.fits(total)) {
      this.stats.overflow++;
      return;
    }
    let off = this.#writeChannel(out.reserve(total), dst);
    const b = out.bytes;
    off = writeBulkHeader(b, off, msgLen);
    off = writeMeshDatagram(b, off, dst, src, ecn, segmentSize, contents);
    b[off] = CR;
    b[off + 1] = LF;
    out.length = off + 2;
    this.#expect.push(TAG_DATAGRAM);
    this.#pub.kick();
  }

  gone(dst: Uint8Array, gone: Uint8Array): void {
    this.#publish(dst, encodeMeshGone(dst, gone), TAG_NOTICE);
  }

  /** Sends the last notices (bounded wait), then closes both links. */
  async close(): Promise<void> {
    this.#sink = null;
    await this.#pub.drain(CLOSE_DRAIN_MS);
    await Promise.all([this.#pub.close(), this.#sub.close()]);
  }

  /**
   * Connection attempts of either link after it was lost, successful or not
   * (`redis_reconnects_total`): with a server that accepts and drops, this
   * grows while {@link RedisMeshStats.reconnects} does not.
   */
  get reconnectAttempts(): number {
    return this.#pub.reconnectAttempts + this.#sub.reconnectAttempts;
  }

  /** True while both links are up. */
  get up(): boolean {
    return this.#pub.up && this.#sub.up;
  }

  /** Writes `*3 $7 PUBLISH $n <prefix>:k:<hex>` at `off` of the pub buffer (reserved by the caller). */
  #writeChannel(off: number, key: Uint8Array): number {
    const b = this.#pub.out.bytes;
    b.set(PUBLISH_HEAD, off);
    off += PUBLISH_HEAD.length;
    off = writeBulkHeader(b, off, this.#chan.length + 2 * KEY_LEN);
    b.set(this.#chan, off);
    off += this.#chan.length;
    for (let i = 0; i < KEY_LEN; i++) {
      const x = key[i]!;
      b[off++] = HEX[x >>> 4]!;
      b[off++] = HEX[x & 15]!;
    }
    b[off] = CR;
    b[off + 1] = LF;
    return off + 2;
  }

  #channel(key: Uint8Array): Uint8Array {
    const out = new Uint8Array(this.#chan.length + 2 * KEY_LEN);
    out.set(this.#chan);
    let off = this.#chan.length;
    for (let i = 0; i < KEY_LEN; i++) {
      out[off++] = HEX[key[i]! >>> 4]!;
      out[off++] = HEX[key[i]! & 15]!;
    }
    return out;
  }

  #publish(key: Uint8Array, msg: Uint8Array, tag: number): void {
    const chanLen = this.#chan.length + 2 * KEY_LEN;
    const total = PUBLISH_HEAD.length + bulkLen(chanLen) + bulkLen(msg.length);
    const out = this.#pub.out;
    if (!out.fits(total)) {
      this.stats.overflow++;
      return;
    }
    let off = this.#writeChannel(out.reserve(total), key);
    const b = out.bytes;
    off = writeBulkHeader(b, off, msg.length);
    b.set(msg, off);
    off += msg.length;
    b[off] = CR;
    b[off + 1] = LF;
    out.length = off + 2;
    this.#expect.push(tag);
    this.#pub.kick();
  }

  /** Appends a command to `conn`'s buffer; on the pub link, `tag` says what its reply means. */
  #command(conn: RedisConn, args: (string | Uint8Array)[], tag: number): void {
    const cmd = encodeCommand(args);
    if (!conn.out.fits(cmd.length)) {
      this.stats.overflow++;
      return;
    }
    const off = conn.out.reserve(cmd.length);
    conn.out.bytes.set(cmd, off);
    conn.out.length += cmd.length;
    if (conn === this.#pub) this.#expect.push(tag);
    conn.kick();
  }

  #countReconnects(): void {
    this.stats.reconnects = this.#pub.reconnects + this.#sub.reconnects;
  }

  #resubscribe(): void {
    this.#countReconnects();
    const keys = [...this.#held.values()];
    for (let i = 0; i < keys.length; i += SUBSCRIBE_BATCH) {
      const batch = keys.slice(i, i + SUBSCRIBE_BATCH).map((k) => this.#channel(k));
      this.#command(this.#sub, ["SUBSCRIBE", ...batch], 0);
    }
  }

  #onPubReply(v: RespValue): void {
    const tag = this.#expect.shift();
    if (v === 0 && tag === TAG_DATAGRAM) this.stats.unrouted++;
    else if (v instanceof RespError) this.#error(`PUBLISH: ${v.message}`);
  }

  #onPush(v: RespValue): void {
    if (!Array.isArray(v)) {
      if (v instanceof RespError) this.#error(`subscriber: ${v.message}`);
      return;
    }
    const kind = v[0];
    // ["message", channel, payload]; subscribe/unsubscribe confirmations and pongs need nothing.
    if (!(kind instanceof Uint8Array) || kind.length !== 7 || kind[0] !== 0x6d /* m */) return;
    const payload = v[2];
    const sink = this.#sink;
    if (!(payload instanceof Uint8Array) || sink === null) return;
    try {
      dispatchMesh(payload, sink, this.#self);
    } catch (e) {
      this.stats.malformed++;
      this.#warn(`undecodable message on ${respText(v[1] ?? null)}: ${(e as Error).message}`);
    }
  }

  /** Counts an error reply and logs it. */
  #error(msg: string): void {
    this.stats.errors++;
    this.#warn(msg);
  }

  /** Logs at most once a second: a misbehaving Redis must not flood the log. */
  #warn(msg: string): void {
    const now = performance.now();
    if (now - this.#lastErrorLog < 1000) return;
    this.#lastErrorLog = now;
    this.#log.warn(`mesh redis: ${msg}`);
  }
}
