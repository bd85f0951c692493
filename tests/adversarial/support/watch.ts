/**
 * @module
 * Runs one attack against a {@link Service} while watching what a user
 * would notice: RSS every 200 ms (the attack is aborted as soon as growth
 * passes `abortAtMiB`, so a failing run on an unfixed build does not eat
 * the shared machine's memory), and legitimate probes (`/ping`, an IMAP
 * login) timed against their bound from 127.0.0.1 for as long as the attack
 * runs.
 */

import { imapLogin, pingMs, probeLoop, RssMonitor, type Service } from "./service.ts";

/** What {@link watchAttack} saw. */
export interface Watched<T> {
  /** The attack's own result. */
  result: T;
  /** RSS before the attack, MiB. */
  baseMiB: number;
  /** Highest RSS growth seen during the attack, MiB. */
  growthMiB: number;
  /** The RSS cap was passed and the attack was cut short. */
  aborted: boolean;
  /** `/ping` probes: successes, worst latency, failures (timeouts and errors). */
  ping?: { ok: number; worstMs: number; failures: string[] };
  /** IMAP login probes. */
  login?: { ok: number; worstMs: number; failures: string[] };
}

/** Options of {@link watchAttack}. */
export interface WatchOptions {
  /** Abort the attack once RSS grew by this much, MiB. */
  abortAtMiB: number;
  /** Probe `/ping` on this port, each within `pingBoundMs`. */
  pingPort?: number;
  pingBoundMs?: number;
  /** Probe an IMAP login on this port, each within `loginBoundMs`. */
  imapPort?: number;
  loginBoundMs?: number;
  /** Gap between probes, ms. Default 300. */
  probeEveryMs?: number;
}

/** Runs `attack(signal)` under the watch; probes run until the attack returns. */
export async function watchAttack<T>(
  svc: Service,
  o: WatchOptions,
  attack: (signal: AbortSignal) => Promise<T>,
): Promise<Watched<T>> {
  const baseMiB = svc.rssMiB();
  const abort = new AbortController();
  const stopProbes = new AbortController();
  let aborted = false;
  const mon = new RssMonitor(svc, 200, (mib) => {
    if (mib - baseMiB > o.abortAtMiB && !aborted) {
      aborted = true;
      abort.abort();
    }
  });
  const every = o.probeEveryMs ?? 300;
  const ping = o.pingPort === undefined
    ? undefined
    : probeLoop(() => pingMs(o.pingPort!, o.pingBoundMs ?? 1000), stopProbes.signal, every);
  const login = o.imapPort === undefined ? undefined : probeLoop(
    async () => {
      const r = await imapLogin(o.imapPort!, o.loginBoundMs ?? 2000);
      if (!/^L1 OK/.test(r.reply)) throw new Error(`login answered ${r.reply}`);
      return r.ms;
    },
    stopProbes.signal,
    every,
  );
  let result: T;
  try {
    result = await attack(abort.signal);
  } finally {
    stopProbes.abort();
    mon.stop();
  }
  const out: Watched<T> = { result, baseMiB, growthMiB: Math.max(0, mon.peak - baseMiB), aborted };
  if (ping) out.ping = await ping;
  if (login) out.login = await login;
  return out;
}

/** One line for the test log: the figures a reader of the report wants. */
export function describe(w: Watched<unknown>): string {
  const p = (x?: { ok: number; worstMs: number; failures: string[] }) =>
    x ? `${x.ok} ok, worst ${Math.round(x.worstMs)} ms, ${x.failures.length} failed` : "-";
  return `RSS ${w.baseMiB.toFixed(0)} MiB +${w.growthMiB.toFixed(0)} MiB${w.aborted ? " (cap hit, aborted)" : ""}; ` +
    `/ping ${p(w.ping)}; login ${p(w.login)}; attack ${JSON.stringify(w.result)}`;
}
