/**
 * @module
 * Password hashes for `[imap.users]`: PBKDF2-SHA256 through WebCrypto, stored
 * as `pbkdf2-sha256$<iterations>$<salt>$<hash>` (standard base64, the format
 * `config/imap.ts` `PASSWORD_HASH` accepts).
 *
 * - {@link hashPassword} is what `main.ts hash-password` prints;
 * - {@link verifyPassword} re-derives with the stored salt and iteration
 *   count and compares in constant time;
 * - {@link dummyHashFor} is what unknown users are checked against, so that
 *   they cost the same PBKDF2 work as a wrong password for a real user and
 *   timing does not tell which user names exist.
 *
 * No `Deno.*` here: WebCrypto is a web standard, so this file stays pure.
 */

/**
 * Default PBKDF2 iteration count. OWASP's 2023 figure for PBKDF2-HMAC-SHA256
 * is 600 000; that costs about a quarter second per login on a small VPS,
 * which matters little because Delta Chat logs in once per connection.
 */
export const DEFAULT_ITERATIONS = 600_000;
/** Fewest iterations {@link hashPassword} accepts (the brief's floor). */
export const MIN_ITERATIONS = 100_000;
/** Most iterations {@link verifyPassword} will run, so a typo in the config cannot stall logins for minutes. */
export const MAX_ITERATIONS = 10_000_000;
/** Salt length, bytes. */
const SALT_BYTES = 16;
/** Derived key length, bytes (one SHA-256 block). */
const HASH_BYTES = 32;

const HASH_FORMAT = /^pbkdf2-sha256\$(\d+)\$([A-Za-z0-9+/=_-]+)\$([A-Za-z0-9+/=_-]+)$/;

/** Options of {@link hashPassword}. */
export interface HashOptions {
  /** PBKDF2 iterations (default {@link DEFAULT_ITERATIONS}, at least {@link MIN_ITERATIONS}). */
  iterations?: number;
  /** Salt (default: 16 random bytes). */
  salt?: Uint8Array;
}

function toBase64(bytes: Uint8Array): string {
  let s = "";
  for (const b of bytes) s += String.fromCharCode(b);
  return btoa(s);
}

function fromBase64(text: string): Uint8Array {
  // Accept the URL-safe alphabet too: people paste hashes from other tools.
  const std = text.replaceAll("-", "+").replaceAll("_", "/").replace(/=+$/, "");
  const bin = atob(std + "=".repeat((4 - (std.length % 4)) % 4));
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}

async function derive(password: string, salt: Uint8Array, iterations: number, bytes: number): Promise<Uint8Array> {
  const key = await crypto.subtle.importKey("raw", new TextEncoder().encode(password), "PBKDF2", false, ["deriveBits"]);
  const bits = await crypto.subtle.deriveBits(
    { name: "PBKDF2", hash: "SHA-256", salt: salt as Uint8Array<ArrayBuffer>, iterations },
    key,
    bytes * 8,
  );
  return new Uint8Array(bits);
}

/**
 * Hashes a password for `[imap.users]`.
 *
 * @param password the clear-text password
 * @param opts iterations and salt (tests only; the defaults are what operators want)
 * @returns `pbkdf2-sha256$<iterations>$<salt>$<hash>`
 * @throws {RangeError} fewer than {@link MIN_ITERATIONS} iterations
 *
 * @example
 * ```ts
 * import { hashPassword, verifyPassword } from "./password.ts";
 * const h = await hashPassword("secret", { iterations: 100_000 });
 * if (!(await verifyPassword("secret", h))) throw new Error("no match");
 * ```
 */
export async function hashPassword(password: string, opts: HashOptions = {}): Promise<string> {
  const iterations = opts.iterations ?? DEFAULT_ITERATIONS;
  if (!Number.isInteger(iterations) || iterations < MIN_ITERATIONS || iterations > MAX_ITERATIONS) {
    throw new RangeError(
      `Iterations must be an integer from ${MIN_ITERATIONS} to ${MAX_ITERATIONS}: got ${iterations}`,
    );
  }
  const salt = opts.salt ?? crypto.getRandomValues(new Uint8Array(SALT_BYTES));
  const hash = await derive(password, salt, iterations, HASH_BYTES);
  return `pbkdf2-sha256$${iterations}$${toBase64(salt)}$${toBase64(hash)}`;
}

/**
 * Checks a password against a stored hash.
 *
 * @returns true on a match; false on a mismatch or a hash we cannot read
 *   (malformed, or an iteration count outside 1…{@link MAX_ITERATIONS})
 */
export async function verifyPassword(password: string, stored: string): Promise<boolean> {
  const m = HASH_FORMAT.exec(stored);
  if (!m) return false;
  const iterations = Number(m[1]);
  if (!Number.isSafeInteger(iterations) || iterations < 1 || iterations > MAX_ITERATIONS) return false;
  let salt: Uint8Array, expected: Uint8Array;
  try {
    salt = fromBase64(m[2]!);
    expected = fromBase64(m[3]!);
  } catch {
    return false;
  }
  if (expected.length === 0 || expected.length > 64) return false;
  const got = await derive(password, salt, iterations, expected.length);
  // Constant-time compare: the work above dominates, but don't leak a prefix length anyway.
  let diff = 0;
  for (let i = 0; i < expected.length; i++) diff |= got[i]! ^ expected[i]!;
  return diff === 0;
}

/** PBKDF2 cost of a stored hash. */
export interface HashParameters {
  /** Iteration count. */
  iterations: number;
  /** Derived key length, bytes. */
  hashBytes: number;
}

/**
 * The cost {@link verifyPassword} would spend on `stored`.
 * @returns null for a hash it would refuse without deriving anything
 */
export function hashParameters(stored: string): HashParameters | null {
  const m = HASH_FORMAT.exec(stored);
  if (!m) return null;
  const iterations = Number(m[1]);
  if (!Number.isSafeInteger(iterations) || iterations < 1 || iterations > MAX_ITERATIONS) return null;
  try {
    const hashBytes = fromBase64(m[3]!).length;
    fromBase64(m[2]!);
    return hashBytes === 0 || hashBytes > 64 ? null : { iterations, hashBytes };
  } catch {
    return null;
  }
}

/**
 * A hash no password matches (random salt and random "hash"), with the
 * highest cost among `stored` (or the default cost when there is none), so
 * checking an unknown user takes as long as checking a real one. With mixed
 * costs in `[imap.users]`, users with a cheaper hash remain distinguishable
 * by timing; re-hash them with the default to avoid that.
 *
 * @example
 * ```ts
 * import { dummyHashFor, hashParameters } from "./password.ts";
 * const real = "pbkdf2-sha256$600000$c2FsdHNhbHRzYWx0c2FsdA==$" + btoa("x".repeat(32));
 * const d = dummyHashFor([real]);
 * if (hashParameters(d)!.iterations !== 600_000) throw new Error("same cost");
 * ```
 */
export function dummyHashFor(stored: Iterable<string>): string {
  let best: HashParameters | null = null;
  for (const h of stored) {
    const p = hashParameters(h);
    if (p && (best === null || p.iterations > best.iterations)) best = p;
  }
  const { iterations, hashBytes } = best ?? { iterations: DEFAULT_ITERATIONS, hashBytes: HASH_BYTES };
  const salt = crypto.getRandomValues(new Uint8Array(SALT_BYTES));
  const hash = crypto.getRandomValues(new Uint8Array(hashBytes));
  return `pbkdf2-sha256$${iterations}$${toBase64(salt)}$${toBase64(hash)}`;
}
