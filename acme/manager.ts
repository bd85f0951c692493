/**
 * @module
 * Certificate lifecycle for `cert_mode = "LetsEncrypt"`, driving the npm
 * `acme-client` (RFC 8555) against the configured directory:
 *
 * 1. {@link AcmeManager.prepare} (before any listener opens): read the
 *    cached certificate from `cert_dir`; if there is none that names every
 *    hostname, write a self-signed placeholder so every TLS listener can
 *    start, while the plain HTTP port (captive portal) serves as usual.
 * 2. {@link AcmeManager.start}: request a certificate now if needed, else
 *    schedule the renewal at 2/3 of its lifetime.
 * 3. On success: write key and chain (0600) into `cert_dir`, then call the
 *    `reload` function main.ts passes in, the same one SIGHUP runs, so every
 *    TLS listener serves the new certificate to new connections while open
 *    ones continue.
 * 4. On failure: one log line naming the cause, the current certificate
 *    kept, a retry after an exponential backoff.
 *
 * Challenges: HTTP-01 only, answered by {@link AcmeManager.route} on the
 * relay's plain HTTP listener. TLS-ALPN-01 (what upstream uses) needs the
 * TLS server to pick a special certificate when a client offers ALPN
 * `acme-tls/1`; `Deno.listenTls` takes one certificate per listener and
 * has no per-handshake hook, so it is not offered.
 */

import https from "node:https";
import acme from "acme-client";
import type { AcmeConfig } from "../config/mod.ts";
import type { Logger } from "../log/mod.ts";
import type { HttpRoute } from "../relay/mod.ts";
import { CHALLENGE_PREFIX, Http01Challenges } from "./http01.ts";
import { readAcmeCa } from "./preflight.ts";
import {
  type Backoff,
  type CertificateInfo,
  DEFAULT_BACKOFF,
  describeAcmeError,
  formatDuration,
  renewalTime,
  retryDelay,
  unusableReason,
} from "./schedule.ts";
import {
  accountKey,
  type AcmePaths,
  acmePaths,
  certificateInfo,
  ensureDir,
  PLACEHOLDER_NAME,
  placeholderCertificate,
  readCertificate,
  tlsPairLoads,
  writeCertificate,
} from "./store.ts";

/** Longest single timer: setTimeout cannot wait longer than ~24.8 days, so long waits are re-armed daily. */
const MAX_TIMER_MS = 24 * 60 * 60 * 1000;

let acmeHttpConfigured = false;

/**
 * Settings of acme-client's own axios instance (process-wide, ACME only):
 * - no per-request retries: our backoff retries whole attempts, and the
 *   library's would sleep through a 429's Retry-After (hours) inside one;
 * - a 30 s request timeout;
 * - network errors (no response) are passed on as they are: acme-client
 *   5.4.0's retry interceptor reads `error.response.config` once retries
 *   are exhausted and throws "Cannot read properties of undefined (reading
 *   'config')", which hides ECONNREFUSED and the like.
 */
function configureAcmeHttp(): void {
  if (acmeHttpConfigured) return;
  acmeHttpConfigured = true;
  const defaults = acme.axios.defaults as unknown as { acmeSettings: { retryMaxAttempts: number }; timeout: number };
  defaults.acmeSettings.retryMaxAttempts = 0;
  defaults.timeout = 30_000;
  type Handler = { rejected?: (e: unknown) => unknown } | null;
  const handlers = (acme.axios.interceptors.response as unknown as { handlers: Handler[] }).handlers;
  for (const h of handlers) {
    const rejected = h?.rejected;
    if (!h || !rejected) continue;
    h.rejected = (e) => (e as { response?: unknown })?.response ? rejected(e) : Promise.reject(e);
  }
}

/** Options of {@link AcmeManager.prepare}. */
export interface AcmeOptions {
  /** Logger (component `acme`). */
  log?: Logger;
  /** Retry delays (default 1 min doubling to 6 h). */
  backoff?: Backoff;
  /** Clock, ms since the epoch (tests). */
  now?: () => number;
  /** Status polling of the ACME client: first and longest wait, ms (default 1000 / 10000). */
  poll?: { minMs: number; maxMs: number };
}

/** What the manager is doing, for logs, `/healthz` and tests. */
export interface AcmeStatus {
  /** `placeholder` (no certificate yet), `valid`. */
  certificate: "placeholder" | "valid";
  /** End of validity of the served certificate (ISO time), if a real one. */
  notAfter?: string;
  /** When the next request is due (ISO time). */
  nextAttempt?: string;
  /** Failed requests since the last success. */
  failures: number;
  /** Certificates obtained by this process. */
  issued: number;
  /** The last failure's description, until a success. */
  lastError?: string;
}

/** Obtains and renews the certificate for `[tls] hostname`. */
export class AcmeManager {
  readonly #cfg: AcmeConfig;
  readonly #paths: AcmePaths;
  readonly #log: Logger | undefined;
  readonly #backoff: Backoff;
  readonly #now: () => number;
  readonly #poll: { minMs: number; maxMs: number };
  readonly #challenges = new Http01Challenges();
  #current: CertificateInfo | undefined;
  #reload: (() => Promise<void>) | undefined;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #inFlight: Promise<void> | undefined;
  #closed = false;
  #failures = 0;
  #issued = 0;
  #lastError: string | undefined;
  #nextAt: number | undefined;

  private constructor(cfg: AcmeConfig, opts: AcmeOptions) {
    this.#cfg = cfg;
    this.#paths = acmePaths(cfg.certDir);
    this.#log = opts.log;
    this.#backoff = opts.backoff ?? DEFAULT_BACKOFF;
    this.#now = opts.now ?? Date.now;
    this.#poll = opts.poll ?? { minMs: 1000, maxMs: 10_000 };
  }

  /**
   * Makes sure `cert_dir` holds a certificate the TLS listeners can load:
   * the cached one, or a placeholder until the CA issues one.
   * @throws {Error} cert_dir cannot be created or written, or acme_ca_file cannot be read
   */
  static async prepare(cfg: AcmeConfig, opts: AcmeOptions = {}): Promise<AcmeManager> {
    const m = new AcmeManager(cfg, opts);
    await m.#prepare();
    return m;
  }

  async #prepare(): Promise<void> {
    // acme-client's own axios instance: the extra CA is trusted for ACME requests only.
    acme.axios.defaults.httpsAgent = this.#cfg.caFile !== undefined
      ? new https.Agent({ ca: await readAcmeCa(this.#cfg.caFile) })
      : undefined;
    configureAcmeHttp();
    try {
      await ensureDir(this.#paths);
    } catch (e) {
      throw new Error(`tls.cert_dir ${this.#paths.dir}: ${(e as Error).message}`);
    }
    let cached = await readCertificate(this.#paths);
    const names = this.#cfg.hostnames.join(", ");
    if (cached && !tlsPairLoads(cached)) {
      // A key that does not match its chain would stop every TLS listener from starting.
      this.#log?.warn(`${this.#paths.cert} and ${this.#paths.key} do not form a usable pair; replacing them`);
      cached = undefined;
    }
    if (cached && !cached.info.domains.includes(PLACEHOLDER_NAME)) {
      const why = unusableReason(cached.info, this.#cfg.hostnames, this.#now());
      if (why === undefined) {
        this.#current = cached.info;
        this.#log?.info(
          `using the cached certificate for ${names} from ${this.#paths.cert} (issuer ${cached.info.issuer}, ` +
            `valid until ${cached.info.notAfter.toISOString()}, renewal from ${
              new Date(renewalTime(cached.info)).toISOString()
            })`,
        );
        return;
      }
      // Expired or for other names: still better than a placeholder until the new one arrives.
      this.#log?.warn(`the cached certificate in ${this.#paths.cert} cannot be used (${why}); requesting a new one`);
      return;
    }
    if (!cached) {
      try {
        await writeCertificate(this.#paths, await placeholderCertificate());
      } catch (e) {
        throw new Error(`tls.cert_dir ${this.#paths.dir}: cannot write: ${(e as Error).message}`);
      }
    }
    this.#log?.warn(
      `no certificate for ${names} yet: HTTPS serves a self-signed placeholder until ${this.#cfg.directoryUrl} issues one`,
    );
  }

  /** The HTTP-01 route for the relay's plain listener (and HTTPS, harmlessly). */
  get route(): HttpRoute {
    return {
      prefix: CHALLENGE_PREFIX,
      maxBodyBytes: 0,
      roles: ["relay", "captive-portal"],
      handle: (req) => this.#challenges.handle(req),
    };
  }

  /** HTTP-01 requests answered with a key authorization so far. */
  get challengesServed(): number {
    return this.#challenges.served;
  }

  /** Current state. */
  status(): AcmeStatus {
    return {
      certificate: this.#current ? "valid" : "placeholder",
      ...(this.#current ? { notAfter: this.#current.notAfter.toISOString() } : {}),
      ...(this.#nextAt !== undefined ? { nextAttempt: new Date(this.#nextAt).toISOString() } : {}),
      failures: this.#failures,
      issued: this.#issued,
      ...(this.#lastError !== undefined ? { lastError: this.#lastError } : {}),
    };
  }

  /**
   * Starts the schedule: a request now if there is no usable certificate,
   * else at renewal time.
   * @param reload what SIGHUP runs: re-reads the certificate files into every TLS listener
   */
  start(reload: () => Promise<void>): void {
    this.#reload = reload;
    if (this.#current) this.#scheduleAt(renewalTime(this.#current));
    else this.#scheduleAt(this.#now());
  }

  /**
   * Requests a certificate now, whatever the schedule says (tests, operators
   * after a hostname change); resolves when the attempt has ended.
   */
  async renewNow(): Promise<void> {
    if (this.#inFlight) return await this.#inFlight;
    this.#clearTimer();
    await this.#attempt();
  }

  /** Stops the schedule. An attempt in progress finishes in the background and changes nothing. */
  close(): void {
    this.#closed = true;
    this.#clearTimer();
  }

  #clearTimer(): void {
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timer = undefined;
  }

  #scheduleAt(at: number): void {
    if (this.#closed) return;
    this.#clearTimer();
    this.#nextAt = at;
    const wait = Math.max(0, at - this.#now());
    const timer = setTimeout(() => {
      this.#timer = undefined;
      if (wait > MAX_TIMER_MS) this.#scheduleAt(at);
      else void this.#attempt();
    }, Math.min(wait, MAX_TIMER_MS));
    this.#timer = timer;
    // A pending renewal must not keep a stopping process alive.
    Deno.unrefTimer(timer as unknown as number);
  }

  #attempt(): Promise<void> {
    if (this.#inFlight) return this.#inFlight;
    const run = this.#obtain().finally(() => {
      this.#inFlight = undefined;
    });
    this.#inFlight = run;
    return run;
  }

  async #obtain(): Promise<void> {
    const names = this.#cfg.hostnames.join(", ");
    this.#log?.info(`requesting a certificate for ${names} from ${this.#cfg.directoryUrl}`);
    let pem: { cert: string; key: string };
    let info: CertificateInfo;
    try {
      pem = await this.#order();
      info = certificateInfo(pem.cert);
      const why = unusableReason(info, this.#cfg.hostnames, this.#now());
      if (why) throw new Error(`the CA issued a certificate that cannot be used: ${why}`);
    } catch (e) {
      if (this.#closed) return;
      this.#failures++;
      const cause = describeAcmeError(e, this.#cfg);
      this.#lastError = cause;
      const delay = retryDelay(this.#failures, this.#backoff, Math.random());
      const keeping = this.#current
        ? `keeping the current certificate (valid until ${this.#current.notAfter.toISOString()})`
        : "HTTPS keeps the placeholder";
      this.#log?.error(
        `certificate request for ${names} failed (attempt ${this.#failures}): ${cause}; ${keeping}; ` +
          `retrying in ${formatDuration(delay)}`,
      );
      this.#scheduleAt(this.#now() + delay);
      return;
    }
    if (this.#closed) return;
    try {
      await writeCertificate(this.#paths, pem);
    } catch (e) {
      this.#failures++;
      const delay = retryDelay(this.#failures, this.#backoff, Math.random());
      this.#lastError = `cannot write ${this.#paths.dir}: ${(e as Error).message}`;
      this.#log?.error(
        `the certificate for ${names} was issued but ${this.#lastError}; retrying in ${formatDuration(delay)}`,
      );
      this.#scheduleAt(this.#now() + delay);
      return;
    }
    this.#current = info;
    this.#failures = 0;
    this.#lastError = undefined;
    this.#issued++;
    const renewAt = renewalTime(info);
    this.#log?.info(
      `certificate for ${names} obtained (valid until ${info.notAfter.toISOString()}, renewal from ` +
        `${new Date(renewAt).toISOString()}); reloading TLS listeners`,
    );
    try {
      await this.#reload?.();
    } catch (e) {
      this.#log?.error(
        `the new certificate is in ${this.#paths.cert} but reloading TLS failed: ${(e as Error).message}`,
      );
    }
    this.#scheduleAt(renewAt);
  }

  /** One order through acme-client: account (created once), HTTP-01 for every name, finalize, download. */
  async #order(): Promise<{ cert: string; key: string }> {
    const client = new acme.Client({
      directoryUrl: this.#cfg.directoryUrl,
      accountKey: await accountKey(this.#paths),
      backoffAttempts: 10,
      backoffMin: this.#poll.minMs,
      backoffMax: this.#poll.maxMs,
    });
    const key = (await acme.crypto.createPrivateEcdsaKey()).toString();
    const [, csr] = await acme.crypto.createCsr(
      { commonName: this.#cfg.hostnames[0]!, altNames: this.#cfg.hostnames },
      key,
    );
    const cert = await client.auto({
      csr,
      email: this.#cfg.contact,
      termsOfServiceAgreed: true,
      challengePriority: ["http-01"],
      // acme-client would fetch the token itself first, through DNS and port 80 of this very host
      // (hairpin NAT often fails that); the CA's own validation is the one that counts.
      skipChallengeVerification: true,
      challengeCreateFn: (_authz, challenge, keyAuthorization) => {
        if (challenge.type !== "http-01") throw new Error(`unsupported challenge ${challenge.type}`);
        this.#challenges.add(challenge.token, keyAuthorization);
        return Promise.resolve();
      },
      challengeRemoveFn: (_authz, challenge) => {
        this.#challenges.remove(challenge.token);
        return Promise.resolve();
      },
    });
    return { cert, key };
  }
}
