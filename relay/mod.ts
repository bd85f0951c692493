/**
 * @module
 * The relay service: the {@link RelayCore} plus its listeners, built from the
 * validated config. `main.ts` and tests start it with {@link startRelay};
 * the edge entry reuses the core and endpoints without these listeners.
 *
 * Listeners (spec §1.1):
 * - without TLS (or `dangerous_http_only`): `http_bind_addr` serves everything;
 * - with TLS: `https_bind_addr` serves everything, `http_bind_addr` only the
 *   captive portal (`/generate_204`);
 * - `metrics_bind_addr`: OpenMetrics text on any path and the detailed
 *   `/healthz`, when enabled; served by the same raw transport (same head
 *   timeout and size limits as the relay port).
 *
 * Every listener admits connections through `admission/`: the relay ports
 * share one gate (`[limits]` max_connections, per-source limits); HTTPS
 * handshakes have a deadline (`tls_handshake_timeout_secs`) and the
 * certificate is swapped in place on reload (no rebinding).
 *
 * @example
 * ```ts
 * import { startRelay } from "./mod.ts";
 * import { configFromText } from "../config/mod.ts";
 * const { config } = configFromText('http_bind_addr = "127.0.0.1:0"\nenable_metrics = false', "inline");
 * const relay = await startRelay(config);
 * const res = await fetch(`http://127.0.0.1:${relay.httpAddr!.port}/ping`);
 * await res.body?.cancel();
 * await relay.close();
 * if (res.status !== 200) throw new Error("ping failed");
 * ```
 */

import {
  type Acceptor,
  AdmissionGate,
  type AdmissionLimits,
  AdmissionMetrics,
  PlainAcceptor,
  TlsAcceptor,
} from "../admission/mod.ts";
import { type Config, formatBindAddr } from "../config/mod.ts";
import type { Logger } from "../log/mod.ts";
import { CONTENT_TYPE, negotiateFormat, toPrometheusText } from "../metrics/mod.ts";
import { detailedHealth, type HealthInfo } from "./transport/endpoints.ts";
import { header, type RequestHead } from "./transport/http1.ts";
import { RelayCore, type RelayOptions } from "./server/relay_core.ts";
import { serveListener, type TransportContext } from "./transport/tcp.ts";
import { ReadBudget } from "./transport/upgrade.ts";
import type { HttpRoute } from "./transport/routes.ts";

export { RelayCore } from "./server/relay_core.ts";
export type { RelayOptions } from "./server/relay_core.ts";
export { type RelayMetrics } from "./server/metrics.ts";
export { InProcessMeshHub, type InstanceMesh, type MeshSink } from "./server/mesh.ts";
export { KEY_LEN } from "./proto/frame_type.ts";
export { isCurvePoint, keyId } from "./proto/public_key.ts";
export { verifyStrict } from "./proto/ed25519.ts";
export { DERP, type Generation, V1, V2 } from "./proto/generation.ts";
export { createFetchHandler, type FetchHandlerOptions } from "./transport/fetch_handler.ts";
export { READ_BUDGET_BYTES, ReadBudget } from "./transport/upgrade.ts";
export type { HealthInfo } from "./transport/endpoints.ts";
export { type HttpRoute, readAtMost, requestBytes, type RouteInfo, type RouteRole } from "./transport/routes.ts";

/** A running relay. */
export interface RelayService {
  /** The shared core (metrics, registry). */
  core: RelayCore;
  /** Address of the plain HTTP listener (relay or captive portal). */
  httpAddr?: Deno.NetAddr;
  /** Address of the HTTPS relay listener, when TLS is on. */
  httpsAddr?: Deno.NetAddr;
  /** Address of the metrics listener, when enabled. */
  metricsAddr?: Deno.NetAddr;
  /**
   * Re-reads TLS files for new connections (old ones stay up); false when
   * the relay serves no TLS.
   * @throws {Error} unreadable or unusable files (the old certificate stays)
   */
  reloadTls(): Promise<boolean>;
  /** Stops listening and closes every connection. */
  close(): Promise<void>;
}

/** Extra wiring for {@link startRelay}. */
export interface StartOptions {
  /** Logger for the relay component. */
  log?: Logger;
  /** What `/healthz` reports. */
  health?: HealthInfo;
  /** Other services' HTTP routes on the relay listener (and the captive portal where a route asks). */
  routes?: readonly HttpRoute[];
  /** Extra metrics text (other services) appended before `# EOF`. */
  extraMetrics?: () => string;
  /** Admission counters shared with other services (rendered here); default: the relay's own. */
  admissionMetrics?: AdmissionMetrics;
  /** Allowance of large read buffers (tests inspect it); default: a fresh {@link ReadBudget}. */
  readBudget?: ReadBudget;
  /** Core overrides (timeouts in tests, injected clock). */
  core?: Omit<RelayOptions, "access" | "clientRx" | "keyCacheCapacity" | "log">;
}

/** How often `cert_mode = "Reloading"` re-reads the certificate files (upstream: 24 h), ms. */
export const TLS_RELOAD_INTERVAL_MS = 24 * 60 * 60 * 1000;

/**
 * Admission on the metrics port: a scraper or two, never thousands of
 * connections (fixed; no config keys).
 */
export const METRICS_ADMISSION: AdmissionLimits = {
  maxConnections: 256,
  reserve: 16,
  maxPerSource: 32,
  perSecond: 16,
  burst: 64,
};

/** Version reported by `/healthz` when the caller gives none. */
const DEFAULT_HEALTH: HealthInfo = { version: "dev", gitHash: "unknown" };

/**
 * Starts the relay listeners described by `cfg`.
 * @throws {Error} a listener cannot bind, or TLS files cannot be read
 */
export async function startRelay(cfg: Config, opts: StartOptions = {}): Promise<RelayService> {
  const log = opts.log;
  // `[mesh]` links this instance to the others behind the same relay URL: the caller builds the
  // backend (mesh/mod.ts) and passes it in `opts.core.mesh`, so relay/ never imports mesh/.
  const mesh = opts.core?.mesh;
  if (cfg.mesh && !mesh) {
    throw new Error("[mesh] is configured but no backend was passed: build it with meshFromConfig (mesh/mod.ts)");
  }
  const core = new RelayCore({
    ...opts.core,
    ...(mesh ? { mesh } : {}),
    access: cfg.access,
    ...(cfg.limits.clientRx ? { clientRx: cfg.limits.clientRx } : {}),
    keyCacheCapacity: cfg.keyCacheCapacity,
    ...(log ? { log } : {}),
  });
  const health = opts.health ?? DEFAULT_HEALTH;
  const routes = opts.routes ?? [];
  const listeners: Acceptor[] = [];
  const loops: Promise<void>[] = [];
  const admissionMetrics = opts.admissionMetrics ?? new AdmissionMetrics();
  const gate = new AdmissionGate(cfg.limits.admission);
  const service: RelayService = {
    core,
    async reloadTls() {
      if (tlsAcceptor === undefined) return false;
      await swapTls();
      return true;
    },
    async close() {
      clearInterval(reloadTimer);
      for (const l of listeners) {
        try {
          l.close();
        } catch {
          // already closed
        }
      }
      core.close();
      // The core does not wait for its mesh; waiting here lets the last EndpointGone notices go out.
      await mesh?.close().catch((e) => log?.warn(`instance mesh close: ${(e as Error).message}`));
      await Promise.allSettled(loops);
    },
  };
  const useTls = cfg.tls !== undefined && !cfg.tls.dangerousHttpOnly;
  const accept = cfg.limits.acceptConnLimit !== undefined
    ? {
      perSecond: cfg.limits.acceptConnLimit,
      burst: cfg.limits.acceptConnBurst ?? Math.max(1, Math.ceil(cfg.limits.acceptConnLimit)),
    }
    : undefined;
  const readBudget = opts.readBudget ?? new ReadBudget();
  const serve = (l: Acceptor, ctx: TransportContext) => {
    listeners.push(l);
    loops.push(serveListener(l, { ...ctx, readBudget, ...(accept ? { acceptLimit: accept } : {}) }));
  };
  let tlsAcceptor: TlsAcceptor | undefined;
  // (Re)reads the PEM files and serves new handshakes with them; open connections keep theirs.
  // The listener stays bound: a bad file is refused and the old certificate stays.
  const swapTls = async () => {
    if (!useTls) return;
    const pem = { cert: await Deno.readTextFile(cfg.tls!.certPath), key: await Deno.readTextFile(cfg.tls!.keyPath) };
    if (tlsAcceptor !== undefined) {
      tlsAcceptor.setCertificate(pem.cert, pem.key);
      return;
    }
    const addr = cfg.tls!.httpsBindAddr;
    tlsAcceptor = await TlsAcceptor.listen({
      hostname: addr.hostname,
      port: addr.port,
      ...pem,
      handshakeTimeoutMs: cfg.limits.tlsHandshakeTimeoutMs,
      gate,
      metrics: admissionMetrics,
      listener: "relay",
      onAcceptError: (e) => {
        core.metrics.c.acceptErrors++;
        core.peerLog.warn("accept failed", `accept failed: ${e.message}`);
      },
    });
    serve(tlsAcceptor, { core, role: "relay", health, routes, scheme: "https" });
    service.httpsAddr = tlsAcceptor.addr;
  };
  let reloadTimer: ReturnType<typeof setInterval> | undefined;
  try {
    await core.startMesh();
    if (cfg.enableMetrics) {
      const ma = cfg.metricsBindAddr;
      const relayAddr = useTls ? cfg.tls!.httpsBindAddr : cfg.httpBindAddr;
      if (
        ma.port !== 0 && (ma.port === relayAddr.port || ma.port === cfg.httpBindAddr.port) &&
        (ma.hostname === relayAddr.hostname || ma.hostname === "::" || relayAddr.hostname === "::")
      ) {
        throw new Error(`metrics_bind_addr ${formatBindAddr(ma)} conflicts with the relay listener`);
      }
    }
    if (cfg.enableRelay) {
      const httpListener = new PlainAcceptor(
        Deno.listen({ hostname: cfg.httpBindAddr.hostname, port: cfg.httpBindAddr.port }),
        { gate, metrics: admissionMetrics, listener: "relay" },
      );
      serve(httpListener, { core, role: useTls ? "captive-portal" : "relay", health, routes, scheme: "http" });
      service.httpAddr = httpListener.addr as Deno.NetAddr;
      await swapTls();
      if (useTls && cfg.tls!.certMode === "Reloading") {
        reloadTimer = setInterval(() => {
          swapTls().then(
            () => log?.info("TLS certificate re-read (Reloading mode)"),
            (e) => log?.error(`TLS certificate reload failed, keeping the old one: ${(e as Error).message}`),
          );
        }, TLS_RELOAD_INTERVAL_MS);
      }
    }
    if (cfg.enableMetrics) {
      const ma = cfg.metricsBindAddr;
      const metricsListener = new PlainAcceptor(Deno.listen({ hostname: ma.hostname, port: ma.port }), {
        gate: new AdmissionGate(METRICS_ADMISSION),
        metrics: admissionMetrics,
        listener: "metrics",
      });
      listeners.push(metricsListener);
      service.metricsAddr = metricsListener.addr;
      const endpoint = (head: RequestHead) => {
        if (head.path === "/healthz") {
          return detailedHealth(health, {
            relay: {
              clients: { ...core.clientsPerGeneration },
              connected_keys: core.connectedKeys,
              open_connections: gate.open,
            },
          });
        }
        // OpenMetrics for scrapers that ask for it (Prometheus does), the 0.0.4 text format otherwise.
        const format = negotiateFormat(header(head, "accept") ?? null);
        const text = core.metrics.render() + admissionMetrics.render() + (opts.extraMetrics?.() ?? "") + "# EOF\n";
        return {
          status: 200,
          headers: [["Content-Type", CONTENT_TYPE[format]]] as [string, string][],
          body: format === "openmetrics" ? text : toPrometheusText(text),
        };
      };
      // Not `serve`: `[limits] accept_conn_limit` is the relay port's.
      loops.push(serveListener(metricsListener, { core, role: "metrics", health, endpoint }));
    }
  } catch (e) {
    await service.close();
    throw e;
  }
  if (service.httpAddr) {
    log?.info(`relay listening on http://${formatBindAddr(service.httpAddr)}${useTls ? " (captive portal only)" : ""}`);
  }
  if (service.httpsAddr) log?.info(`relay listening on https://${formatBindAddr(service.httpsAddr)}`);
  if (service.metricsAddr) log?.info(`metrics on http://${formatBindAddr(service.metricsAddr)}/metrics`);
  return service;
}
