/**
 * @module
 * Service assembly: starts every service a validated config enables (the
 * relay with its mesh, mailbox, discovery and ACME routes, the IMAP
 * METADATA listener, STUN) in the order they depend on each other, shares
 * one set of admission counters and one health report between them, and
 * stops them in reverse. `main.ts` keeps the command line, config loading
 * and signals.
 */

import { type Config, ConfigError, formatBindAddr } from "../config/mod.ts";
import type { Logger } from "../log/mod.ts";
import { renderProcessMetrics } from "../metrics/mod.ts";
import { addMeshMetrics, meshFromConfig } from "../mesh/mod.ts";
import { type HttpRoute, type RelayService, requestBytes, startRelay } from "../relay/mod.ts";
import { AdmissionMetrics } from "../admission/mod.ts";
import { type MailboxService, startMailbox } from "../mailbox/mod.ts";
import { type DiscoveryHandle, startDiscovery } from "../discovery/mod.ts";
import { type ImapService, startImap } from "../imap_metadata/mod.ts";
import { AcmeManager, type AcmeOptions } from "../acme/mod.ts";
import { startStunServer, type StunServer } from "../stun/mod.ts";
import { GIT_HASH, VERSION } from "./build_info.ts";

/** The running services. */
export interface Services {
  /** The relay, if enabled. */
  relay?: RelayService;
  /** The IMAP listener, if `[imap]` is present. */
  imap?: ImapService;
  /** The STUN server, if `enable_stun`. */
  stun?: StunServer;
  /** Certificate renewal, with `cert_mode = "LetsEncrypt"`. */
  acme?: AcmeManager;
  /**
   * Re-reads the certificate files into every TLS listener (HTTPS relay,
   * IMAPS); new connections get the new certificate, open ones continue.
   * SIGHUP and ACME both call it.
   * @returns the names of the listeners that took a new certificate
   * @throws {Error} naming the listeners whose files were unusable (those keep the old certificate; the others
   *   were still reloaded)
   */
  reloadTls(): Promise<string[]>;
  /** The Matrix relay mailbox, if `[mailbox]` is present (served on the relay listener). */
  mailbox?: MailboxService;
  /** Discovery (pkarr relay + DNS), if `[discovery]` is present. */
  discovery?: DiscoveryHandle;
  /** Stops everything. */
  close(): Promise<void>;
}

/** Knobs of {@link startServices} that are not config keys (tests shorten ACME's waits). */
export interface ServiceTuning {
  /** ACME retry backoff, status polling and clock. */
  acme?: Pick<AcmeOptions, "backoff" | "poll" | "now">;
}

/**
 * Starts every service `config` enables.
 * @throws {Error} nothing is enabled, or a listener cannot start
 */
export async function startServices(config: Config, log: Logger, tuning: ServiceTuning = {}): Promise<Services> {
  if (!config.enableRelay && !config.imap && !config.discovery) {
    throw new ConfigError(
      "enable_relay",
      "nothing to run: the relay is disabled and there is no [imap] or [discovery] section",
    );
  }
  const services: Services = {
    async reloadTls() {
      const done: string[] = [];
      const failed: string[] = [];
      const targets: [string, (() => Promise<boolean>) | undefined][] = [
        ["relay https", services.relay && (() => services.relay!.reloadTls())],
        ["imaps", services.imap && (() => services.imap!.reloadTls())],
      ];
      for (const [name, reload] of targets) {
        if (!reload) continue;
        try {
          if (await reload()) done.push(name);
        } catch (e) {
          failed.push(`${name}: ${(e as Error).message}`);
        }
      }
      if (failed.length) {
        throw new Error(`${failed.join("; ")}${done.length ? ` (reloaded: ${done.join(", ")})` : ""}`);
      }
      return done;
    },
    async close() {
      services.acme?.close();
      await Promise.allSettled([services.imap?.close(), services.relay?.close(), services.stun?.close()]);
      // After the relay: no request can reach the store any more.
      await Promise.allSettled([services.mailbox?.close(), services.discovery?.close()]);
    },
  };
  try {
    // One set of admission counters for every listener, rendered on the metrics port.
    const admissionMetrics = new AdmissionMetrics();
    const health = {
      version: VERSION,
      gitHash: GIT_HASH,
      services: () => ({
        imap: services.imap ? services.imap.status() : "disabled",
        ...(services.acme ? { certificate: services.acme.status().certificate } : {}),
        mailbox: services.mailbox ? services.mailbox.status() : "disabled",
        discovery: services.discovery ? services.discovery.health() : "disabled",
      }),
      // The public /healthz says "unhealthy" (503) when a store the service depends on is failing.
      healthy: () =>
        (services.discovery?.health().healthy ?? true) &&
        (services.mailbox ? services.mailbox.status().state === "ok" : true),
    };
    const routes: HttpRoute[] = [];
    if (config.mailbox) {
      const mailbox = services.mailbox = await startMailbox(config.mailbox, { log: log.child("mailbox") });
      routes.push({
        prefix: mailbox.prefix,
        maxBodyBytes: mailbox.maxBodyBytes,
        // relay_txn is a GET with a JSON body, which the listener hands over aside.
        handle: async (req) => mailbox.handle(req, await requestBytes(req)),
      });
    }
    if (config.discovery) {
      services.discovery = await startDiscovery(config.discovery, { log: log.child("discovery") });
      routes.push(...services.discovery.routes);
    }
    const build = { version: VERSION, git: GIT_HASH, deno: Deno.version.deno };
    const relayLog = log.child("relay");
    const tls = config.tls;
    // Before any listener opens: the cached certificate, or a placeholder the TLS listeners can load.
    if (tls?.acme && !tls.dangerousHttpOnly) {
      services.acme = await AcmeManager.prepare(tls.acme, { ...tuning.acme, log: log.child("acme") });
    }
    // `[mesh]` links this instance to the others behind the same relay URL.
    const mesh = config.mesh ? meshFromConfig(config.mesh, { log: relayLog }) : undefined;
    services.relay = await startRelay(config, {
      log: relayLog,
      health,
      routes: [...routes, ...(services.acme ? [services.acme.route] : [])],
      extraMetrics: () =>
        (services.imap?.metrics() ?? "") + (services.stun?.metrics.render() ?? "") +
        (services.mailbox?.metrics() ?? "") + (services.discovery?.metrics() ?? "") +
        renderProcessMetrics("iroh_relay_deno", build),
      admissionMetrics,
      ...(mesh ? { core: { mesh } } : {}),
    });
    if (mesh) addMeshMetrics(services.relay.core.metrics, mesh);
    if (config.imap) services.imap = await startImap(config, { log: log.child("imap"), admissionMetrics });
    if (config.enableStun) {
      const stunLog = log.child("stun");
      try {
        services.stun = startStunServer(config.stunBindAddr, { log: stunLog });
      } catch (e) {
        throw new Error(`stun_bind_addr ${formatBindAddr(config.stunBindAddr)}: ${(e as Error).message}`);
      }
      stunLog.info(`STUN listening on udp://${formatBindAddr(services.stun.addr)}`);
    }
    services.acme?.start(async () => {
      await services.reloadTls();
    });
  } catch (e) {
    await services.close();
    throw e;
  }
  return services;
}
