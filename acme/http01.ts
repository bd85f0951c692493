/**
 * @module
 * HTTP-01 challenge responses (RFC 8555 §8.3): while an order is being
 * validated, `GET /.well-known/acme-challenge/<token>` on port 80 answers
 * the key authorization for that token. Served as an HTTP route on the
 * relay's plain listener, which is the captive portal when TLS is on.
 *
 * Only tokens of our own pending orders are held, so the map is bounded by
 * the number of configured hostnames.
 */

/** Path prefix of HTTP-01 challenges. */
export const CHALLENGE_PREFIX = "/.well-known/acme-challenge/";

/** Tokens are base64url (RFC 8555 §8.1); anything else is not ours. */
const TOKEN = /^[A-Za-z0-9_-]{1,256}$/;

/** The pending HTTP-01 challenges of this process. */
export class Http01Challenges {
  readonly #pending = new Map<string, string>();
  /** Challenge requests answered (for tests and logs). */
  served = 0;

  /** Starts answering `token` with `keyAuthorization`. */
  add(token: string, keyAuthorization: string): void {
    if (!TOKEN.test(token)) throw new RangeError(`Invalid ACME challenge token: ${token.slice(0, 40)}`);
    this.#pending.set(token, keyAuthorization);
  }

  /** Stops answering `token`. */
  remove(token: string): void {
    this.#pending.delete(token);
  }

  /** Number of pending tokens. */
  get size(): number {
    return this.#pending.size;
  }

  /**
   * The response to a request, as a fetch-style handler.
   * @example
   * ```ts
   * import { Http01Challenges } from "./http01.ts";
   * const c = new Http01Challenges();
   * c.add("tok", "tok.thumbprint");
   * const res = c.handle(new Request("http://relay.example/.well-known/acme-challenge/tok"));
   * if (await res.text() !== "tok.thumbprint") throw new Error("wrong answer");
   * ```
   */
  handle(req: Request): Response {
    const path = new URL(req.url).pathname;
    const token = path.startsWith(CHALLENGE_PREFIX) ? path.slice(CHALLENGE_PREFIX.length) : "";
    const answer = (req.method === "GET" || req.method === "HEAD") && TOKEN.test(token)
      ? this.#pending.get(token)
      : undefined;
    if (answer === undefined) {
      return new Response("Not Found", { status: 404, headers: { "Content-Type": "text/plain; charset=utf-8" } });
    }
    this.served++;
    return new Response(answer, { status: 200, headers: { "Content-Type": "application/octet-stream" } });
  }
}
