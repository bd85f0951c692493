/**
 * @module
 * When to ask the CA, and how to say why it failed. Pure: certificate
 * dates, hostnames, the clock and errors in; decisions and log text out.
 *
 * - A cached certificate is used if it is not expired and names every
 *   configured hostname; otherwise a new one is requested at start.
 * - Renewal starts at 2/3 of the certificate's lifetime (day 60 of Let's
 *   Encrypt's 90), leaving a month of retries before it expires.
 * - Failures back off exponentially with ±10 % jitter, from one minute to
 *   six hours: Let's Encrypt allows 5 failed validations per hostname and
 *   hour, and a CA that is down should not be hammered.
 */

/** What a certificate file says about itself. */
export interface CertificateInfo {
  /** Start of validity. */
  notBefore: Date;
  /** End of validity. */
  notAfter: Date;
  /** DNS names it is valid for (subject CN and subjectAltName). */
  domains: string[];
}

/** Retry delays after a failed request. */
export interface Backoff {
  /** First retry delay, ms. */
  initialMs: number;
  /** Longest retry delay, ms. */
  maxMs: number;
}

/** Production backoff: 1 min doubling to 6 h. */
export const DEFAULT_BACKOFF: Backoff = { initialMs: 60_000, maxMs: 6 * 60 * 60_000 };

/** Fraction of the lifetime after which a certificate is renewed. */
export const RENEW_AT_FRACTION = 2 / 3;

/** Time (ms since the epoch) from which `cert` should be renewed. */
export function renewalTime(cert: CertificateInfo): number {
  const from = cert.notBefore.getTime();
  return from + (cert.notAfter.getTime() - from) * RENEW_AT_FRACTION;
}

/**
 * Why a cached certificate cannot be served as it is, or undefined if it can.
 * @param cert what the file says
 * @param hostnames the configured names (all must be covered)
 * @param now ms since the epoch
 */
export function unusableReason(cert: CertificateInfo, hostnames: readonly string[], now: number): string | undefined {
  const have = new Set(cert.domains.map((d) => d.toLowerCase()));
  const missing = hostnames.filter((h) => !have.has(h.toLowerCase()));
  if (missing.length) return `it does not name ${missing.join(", ")}`;
  if (cert.notAfter.getTime() <= now) return `it expired on ${cert.notAfter.toISOString()}`;
  return undefined;
}

/**
 * Delay before retry number `failures` (1 = after the first failure).
 * @param random a number in [0, 1) for the jitter
 */
export function retryDelay(failures: number, backoff: Backoff, random: number): number {
  const base = Math.min(backoff.maxMs, backoff.initialMs * 2 ** Math.max(0, Math.min(failures - 1, 30)));
  return Math.round(base * (0.9 + 0.2 * random));
}

/** A duration as operators read it: `45s`, `12m`, `3h`, `2d`. */
export function formatDuration(ms: number): string {
  if (ms < 10_000) return `${(Math.max(0, ms) / 1000).toFixed(1)}s`;
  const s = Math.round(ms / 1000);
  if (s < 120) return `${s}s`;
  if (s < 2 * 3600) return `${Math.round(s / 60)}m`;
  if (s < 2 * 86400) return `${Math.round(s / 3600)}h`;
  return `${Math.round(s / 86400)}d`;
}

/**
 * One line naming the cause of a failed certificate request, for the log:
 * unreachable CA, rate limit, failed validation (wrong DNS or port 80
 * closed) or the CA's own message.
 * @param e what the ACME client threw
 * @param ctx the directory URL and hostnames asked for
 */
export function describeAcmeError(e: unknown, ctx: { directoryUrl: string; hostnames: readonly string[] }): string {
  const err = e as { message?: unknown; code?: unknown; cause?: { code?: unknown; message?: unknown } };
  const message = String(err?.message ?? e).replace(/\s+/g, " ").trim();
  const code = String(err?.code ?? err?.cause?.code ?? "");
  const network = /^(ECONNREFUSED|ECONNRESET|ENOTFOUND|EAI_AGAIN|ETIMEDOUT|EHOSTUNREACH|ENETUNREACH|ECONNABORTED)$/;
  // Only the client's own socket errors: a CA's validation report may also say "connection refused".
  if (network.test(code) || /^(connect |getaddrinfo )?(ECONNREFUSED|ENOTFOUND|ETIMEDOUT|EAI_AGAIN)\b/.test(message)) {
    return `cannot reach the ACME server ${ctx.directoryUrl} (${code || message})`;
  }
  if (/rateLimited|rate limit|too many/i.test(message)) return `rate limited by the ACME server: ${message}`;
  // The TLS client's own verdicts on the CA's HTTPS certificate (OpenSSL codes and texts, rustls texts).
  const untrusted =
    /^(UNABLE_TO_|SELF_SIGNED|DEPTH_ZERO|CERT_|ERR_TLS_CERT)|unable to verify the first certificate|unable to get local issuer|self[- ]signed certificate|invalid peer certificate|UnknownIssuer/;
  if (untrusted.test(code) || untrusted.test(message)) {
    return `the ACME server's HTTPS certificate is not trusted (${message}); set tls.acme_ca_file for a private CA`;
  }
  if (/unauthorized|invalid response|connection|dns|NXDOMAIN|no valid ip|challenge|authorization/i.test(message)) {
    return `validation of ${ctx.hostnames.join(", ")} failed (the name must point at this server and ` +
      `http://NAME/.well-known/acme-challenge/ must reach this relay's HTTP port): ${message}`;
  }
  return `ACME request failed: ${message}`;
}
