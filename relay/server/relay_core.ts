/**
 * @module
 * The relay core: one per service, shared by every transport and both
 * client generations. It owns the registry, routing, the access policy
 * (through `access_control.ts`), metrics and the sweeper that runs every
 * connection's timers.
 *
 * Transports call {@link RelayCore.accept} with a {@link FrameSender} after
 * the upgrade and feed frames to the returned {@link Client}; they register
 * pre-upgrade connections with {@link RelayCore.watch} so the establish
 * timeout covers half-sent requests too.
 */

import { ACCESS_HTTP_FAILURES, type AccessConfig, type AccessVerdict } from "./access.ts";
import { AccessControl, type AccessRecheck } from "./access_control.ts";
import { Client, type ConnInfo, type FrameSender, PING_AFTER_MS } from "./client.ts";
import { Clients, type KeyEntry } from "./clients.ts";
import { verifyStrict } from "../proto/ed25519.ts";
import type { VerifyFn } from "../proto/handshake.ts";
import { type Logger, RateLimitedLog, silentLogger, suppressedLogLines } from "../../log/mod.ts";
import type { InstanceMesh } from "./mesh.ts";
import { RelayMetrics } from "./metrics.ts";
import { KEY_LEN } from "../proto/frame_type.ts";
import { keyFromId, keyId, keyIdAt, keyShort, KeyValidityCache, keyWords, sameKeyAt } from "../proto/public_key.ts";

/** Tunables of the core. Defaults follow upstream. */
export interface RelayOptions {
  /** Who may connect. Default everyone. */
  access?: AccessConfig;
  /** `[limits.client.rx]`: per-connection receive limit. */
  clientRx?: { bytesPerSecond: number; maxBurstBytes?: number };
  /** Time from TCP accept to registration, ms. Default 30 000. */
  establishTimeoutMs?: number;
  /** Silence before a server ping, ms (jitter of 1–5 s is added). Default 15 000. */
  pingAfterMs?: number;
  /** Sweeper period, ms. Default 250. */
  tickMs?: number;
  /** Capacity of the key validity cache (`key_cache_capacity`). */
  keyCacheCapacity?: number;
  /** Logger. Default silent. */
  log?: Logger;
  /** Clock in ms (monotonic). Default `performance.now`. */
  now?: () => number;
  /** CSPRNG. Default `crypto.getRandomValues`. */
  random?: (n: number) => Uint8Array;
  /** Strict Ed25519 verification. Default {@link verifyStrict}. */
  verify?: VerifyFn;
  /** `fetch` for the http access mode. */
  fetch?: typeof fetch;
  /** Link to other instances serving the same relay URL (see `mesh.ts`). */
  mesh?: InstanceMesh;
}

/** Something with timers the sweeper runs (clients, pending HTTP connections). */
export interface Watched {
  /** Checks deadlines at `now`, closing what expired. */
  checkTimers(now: number): void;
  /** Closes it now (relay shutdown). */
  shutdown?(): void;
}

export { ACCESS_RECHECK_CONCURRENCY, type AccessRecheck } from "./access_control.ts";

/** Resolved options. */
export interface CoreOpts {
  establishTimeoutMs: number;
  pingAfterMs: number;
  tickMs: number;
  clientRx?: { bytesPerSecond: number; maxBurstBytes?: number };
}

/** See the module doc. */
export class RelayCore {
  /** Counters and gauges. */
  readonly metrics: RelayMetrics = new RelayMetrics();
  /** Resolved tunables. */
  readonly opts: CoreOpts;
  /** Logger. */
  readonly log: Logger;
  /** Rate-limited lines for events a peer can trigger (refusals, duplicate keys, hook failures). */
  readonly peerLog: RateLimitedLog;
  /** Clock, ms. */
  readonly now: () => number;
  /** CSPRNG. */
  readonly random: (n: number) => Uint8Array;
  /** Signature check. */
  readonly verify: VerifyFn;
  /** Clock reading at the sweeper's last tick: a cheap, slightly early "now" for per-frame bookkeeping. */
  tickNow: number;
  readonly #clients: Clients;
  readonly #watched = new Set<Watched>();
  readonly #keyCache: KeyValidityCache;
  readonly #access: AccessControl;
  #timer: ReturnType<typeof setInterval> | undefined;
  #closing = false;
  /** Registered connections per generation, for the gauge. */
  #perGen = { "0.35": 0, "1.x": 0 };
  readonly #mesh: InstanceMesh | null;

  /** @param opts tunables; all optional */
  constructor(opts: RelayOptions = {}) {
    this.opts = {
      establishTimeoutMs: opts.establishTimeoutMs ?? 30_000,
      pingAfterMs: opts.pingAfterMs ?? PING_AFTER_MS,
      tickMs: opts.tickMs ?? 250,
      ...(opts.clientRx ? { clientRx: opts.clientRx } : {}),
    };
    this.log = opts.log ?? silentLogger;
    this.peerLog = new RateLimitedLog(this.log);
    this.now = opts.now ?? (() => performance.now());
    this.random = opts.random ?? ((n) => crypto.getRandomValues(new Uint8Array(n)));
    this.verify = opts.verify ?? verifyStrict;
    this.tickNow = this.now();
    this.#mesh = opts.mesh ?? null;
    this.#keyCache = new KeyValidityCache(opts.keyCacheCapacity ?? 1 << 20);
    const access = opts.access ?? { mode: "everyone" };
    this.#access = new AccessControl(access, opts.fetch, this.peerLog);
    this.#clients = new Clients({
      onDuplicate: (old, by, replaced) => {
        if (!replaced) this.metrics.c.clientsInactiveAdded++;
        // One signed 0.35 ClientInfo replayed on new connections replaces itself over and over: limited.
        this.peerLog.info(
          "duplicate key",
          () => `${old.label}: ${replaced ? "replaced" : "made inactive"} by ${by.label}`,
        );
      },
      onInactiveRemoved: () => this.metrics.c.clientsInactiveRemoved++,
      onKeyGone: (entry, c) => this.#notifyGone(entry, c),
    });
    this.metrics.addGauge({
      name: "clients",
      help: "Authenticated relay connections by client generation",
      read: () => [[{ generation: "0.35" }, this.#perGen["0.35"]], [{ generation: "1.x" }, this.#perGen["1.x"]]],
    });
    this.metrics.addGauge({
      name: "connected_keys",
      help: "Distinct keys with at least one connection",
      read: () => [[{}, this.#clients.size]],
    });
    this.metrics.addFamily({
      name: "access_http_checks_in_flight",
      type: "gauge",
      help: "Requests to the access.http hook running now",
      read: () => [[{}, this.#access.gate.inFlight]],
    });
    this.metrics.addFamily({
      name: "access_http_failures",
      type: "counter",
      help: "Access checks the http hook failed to answer, by reason (the client is refused, or kept on a reload)",
      read: () => ACCESS_HTTP_FAILURES.map((reason) => [{ reason }, this.#access.gate.failures[reason]]),
    });
    this.metrics.addFamily({
      name: "log_lines_suppressed",
      type: "counter",
      help: "Log lines a peer could trigger that were dropped by the rate limit (summarised instead)",
      read: () => [[{}, suppressedLogLines()]],
    });
    this.#timer = setInterval(() => this.#tick(), this.opts.tickMs);
    // The sweeper alone must not keep a process alive: under `deno serve` the server's own
    // shutdown on SIGTERM should end the process even though nobody calls close().
    Deno.unrefTimer(this.#timer as unknown as number);
  }

  /**
   * Starts the instance mesh given in the options, if any: call (and await)
   * before accepting clients.
   */
  async startMesh(): Promise<void> {
    const mesh = this.#mesh;
    if (mesh === null) return;
    await mesh.start({
      datagram: (dst, src, ecn, segmentSize, contents) => {
        const entry = this.#clients.get(keyId(dst));
        if (entry === undefined || !entry.active.enqueueDatagram(src, ecn, segmentSize, contents, 0, contents.length)) {
          this.metrics.c.meshDropped++;
          return;
        }
        this.metrics.c.meshReceived++;
      },
      gone: (dst, gone) => {
        const entry = this.#clients.get(keyId(dst));
        entry?.active.enqueueControl(entry.active.gen.gone(gone));
      },
      claimed: (key) => {
        const entry = this.#clients.get(keyId(key));
        if (entry === undefined) return;
        // The newer connection wins, as for duplicates on one instance; this one cannot
        // stay "inactive" usefully, since datagrams for the key now go to the other instance.
        // The key is still connected, elsewhere: its peers must not get EndpointGone.
        entry.moved = true;
        for (const c of [entry.active, ...entry.inactive]) c.close("the key connected to another relay instance");
      },
    });
    this.log.info(`instance mesh: ${mesh.kind}`);
  }

  /**
   * Replaces the access policy (config reload), then re-checks connected
   * clients a few at a time: those the new policy refuses are closed; those
   * it cannot decide about (the http hook is down, slow or busy) are kept.
   * A newer reload stops this one's re-check (see {@link AccessControl.reload}).
   */
  setAccess(cfg: AccessConfig): Promise<AccessRecheck> {
    const all: Client[] = [];
    for (const entry of this.#clients.entries()) all.push(entry.active, ...entry.inactive);
    return this.#access.reload(cfg, all, () => this.#closing);
  }

  /** Connected keys. */
  get connectedKeys(): number {
    return this.#clients.size;
  }

  /** Registered connections of each generation. */
  get clientsPerGeneration(): Readonly<Record<"0.35" | "1.x", number>> {
    return this.#perGen;
  }

  /** Asks the access policy for a new connection: anything but `allow` refuses (fail closed). Never rejects. */
  async allows(key: Uint8Array, token: string | undefined): Promise<boolean> {
    return await this.check(key, token) === "allow";
  }

  /** Asks the access policy; never rejects (a throwing policy is `unavailable`). */
  check(key: Uint8Array, token: string | undefined): Promise<AccessVerdict> {
    return this.#access.check(key, token);
  }

  /** True if `key` decodes as an Ed25519 point (cached), as upstream's frame decoder requires. */
  isCurvePoint(key: Uint8Array): boolean {
    return this.#keyCache.isValid(keyId(key), key);
  }

  /**
   * Starts serving an upgraded connection.
   * @returns the client to feed frames to with {@link Client.onFrame}
   */
  accept(sender: FrameSender, info: ConnInfo): Client {
    const c = new Client(this, sender, info);
    if (this.#closing) {
      c.close("relay shutting down");
      return c;
    }
    if (info.framing === "websocket") this.metrics.c.websocketAccepts++;
    else this.metrics.c.relayAccepts++;
    this.#watched.add(c);
    c.start();
    return c;
  }

  /** Adds something whose timers the sweeper should run until {@link unwatch}. */
  watch(w: Watched): void {
    this.#watched.add(w);
  }

  /** Stops running timers for `w`. */
  unwatch(w: Watched): void {
    this.#watched.delete(w);
  }

  /** Called by a client whose handshake succeeded. */
  register(c: Client): void {
    const fresh = this.#clients.register(c);
    this.metrics.c.accepts++;
    if (fresh) {
      this.metrics.c.uniqueClientKeys++;
      this.#mesh?.claim(c.key);
    }
    this.#perGen[c.gen.name]++;
    // Per-connection lines are debug: at info they cost a sync stderr write per client in a connect storm.
    if (this.log.debugEnabled) this.log.debug(`${c.label}: connected from ${c.info.remote}`);
  }

  /** Called once by a client when it closes. */
  closed(c: Client, wasRegistered: boolean, reason: string): void {
    this.#watched.delete(c);
    this.metrics.countDisconnect(reason);
    if (wasRegistered) {
      this.#perGen[c.gen.name]--;
      this.metrics.c.disconnects++;
      this.#clients.unregister(c);
      if (this.log.debugEnabled) this.log.debug(`${c.label}: disconnected: ${reason}`);
    } else {
      if (this.log.debugEnabled) this.log.debug(`${c.label}: closed before registering: ${reason}`);
    }
  }

  /**
   * Forwards one datagram from `src`: destination key at `dstBuf[dstOff..+32]`,
   * contents at `contents[start..end]` (views into the sender's read buffer;
   * the receiver copies the contents into its write buffer). Drops (and
   * counts) when the key is not connected, the queue is full, or the
   * receiver's generation cannot carry it; closes `src` if the destination is
   * not a key at all, as upstream's decoder does.
   *
   * Hot path: a sender usually talks to one peer for a while, so the last
   * destination and its registry entry are cached on the sender, which saves
   * building a string key and a map lookup per packet.
   *
   * @returns the receiving client, or null if the datagram was dropped
   */
  route(
    src: Client,
    dstBuf: Uint8Array,
    dstOff: number,
    ecn: number,
    segmentSize: number,
    contents: Uint8Array,
    start: number,
    end: number,
  ): Client | null {
    const c = this.metrics.c;
    c.sendPacketsRecv++;
    c.bytesRecv += end - start;
    let entry = src.lastEntry;
    if (entry === null || entry.gone || !sameKeyAt(src.lastDst!, src.viewOf(dstBuf), dstBuf.byteOffset + dstOff)) {
      const dstId = keyIdAt(dstBuf, dstOff);
      const found = this.#clients.get(dstId);
      if (found === undefined) {
        const dstKey = dstBuf.subarray(dstOff, dstOff + KEY_LEN);
        if (!this.#keyCache.isValid(dstId, dstKey)) {
          c.sendPacketsDropped++;
          src.close("datagram for an invalid key");
        } else if (this.#mesh !== null) {
          // Not here: maybe on another instance of this relay URL.
          this.#mesh.forward(dstKey, src.key, ecn, segmentSize, contents.subarray(start, end));
          c.meshForwarded++;
          this.#clients.get(src.id)?.sentTo.add(dstId);
        } else {
          c.sendPacketsDropped++;
        }
        return null;
      }
      entry = found;
      src.lastDst = keyWords(dstBuf, dstOff);
      src.lastEntry = entry;
      src.lastRecorded = false;
    }
    if (!entry.active.writer.enqueueDatagram(src.key, ecn, segmentSize, contents, start, end)) {
      c.sendPacketsDropped++;
      return null;
    }
    if (!src.lastRecorded) {
      // sent_to drives EndpointGone; recording once per cached destination is enough.
      this.#clients.get(src.id)?.sentTo.add(entry.id);
      src.lastRecorded = true;
    }
    return entry.active;
  }

  #notifyGone(entry: KeyEntry, leaving: Client): void {
    let notified = 0;
    this.#mesh?.release(leaving.key);
    if (entry.moved) return;
    for (const id of entry.sentTo) {
      const peer = this.#clients.get(id);
      if (peer !== undefined) {
        if (peer.active.enqueueControl(peer.active.gen.gone(leaving.key))) notified++;
      } else {
        // A peer on another instance (or gone): let its instance tell it.
        this.#mesh?.gone(keyFromId(id), leaving.key);
      }
    }
    entry.sentTo.clear();
    if (this.log.debugEnabled) this.log.debug(`key ${keyShort(leaving.key)} gone; notified ${notified} peers`);
  }

  #tick(): void {
    const now = this.now();
    this.tickNow = now;
    for (const w of this.#watched) w.checkTimers(now);
  }

  /** Sleeps `ms` (rate limiting); resolves at once on shutdown. */
  sleep(ms: number): Promise<void> {
    if (this.#closing) return Promise.resolve();
    return new Promise((resolve) => {
      const t = setTimeout(() => {
        this.#sleeps.delete(wake);
        resolve();
      }, ms);
      const wake = () => {
        clearTimeout(t);
        resolve();
      };
      this.#sleeps.add(wake);
    });
  }
  readonly #sleeps = new Set<() => void>();

  /** Stops the sweeper, closes every connection and the mesh link. */
  close(): void {
    this.#closing = true;
    if (this.#timer !== undefined) clearInterval(this.#timer);
    this.#timer = undefined;
    for (const w of [...this.#watched]) {
      if (w instanceof Client) w.close("relay shutting down");
      else w.shutdown?.();
    }
    for (const wake of this.#sleeps) wake();
    this.#sleeps.clear();
    this.peerLog.close();
    this.#mesh?.close().catch((e) => this.log.warn(`instance mesh close: ${(e as Error).message}`));
  }

  /** Keys currently connected, as bytes (for tests and admin views). */
  connectedKeyList(): Uint8Array[] {
    return [...this.#clients.entries()].map((e) => keyFromId(e.active.id));
  }
}
