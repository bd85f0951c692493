/**
 * @module
 * Small HTTP helpers shared by the pkarr and DoH handlers: iroh-dns-server's
 * JSON error body, CORS headers, and a bounded body read for when a handler
 * is called without the relay's route layer in front (tests, embedding).
 */

/** CORS as upstream: any origin; GET, POST, PUT. */
export const CORS: Record<string, string> = {
  "access-control-allow-origin": "*",
  "access-control-allow-methods": "GET, POST, PUT",
};

/** `{"status":"400","detail":"…"}` (status is a string, as upstream's `http/error.rs`). */
export function errorResponse(status: number, detail: string | null, headers: Record<string, string> = {}): Response {
  return new Response(JSON.stringify({ status: String(status), detail }), {
    status,
    headers: { ...CORS, "content-type": "application/json", ...headers },
  });
}

/**
 * Reads at most `max` bytes of a request body.
 * @returns the body, or null if it is longer than `max` (the rest is not read)
 */
export async function readBody(req: Request, max: number): Promise<Uint8Array | null> {
  const declared = Number(req.headers.get("content-length") ?? "NaN");
  if (Number.isFinite(declared) && declared > max) {
    await req.body?.cancel().catch(() => {});
    return null;
  }
  if (req.body === null) return new Uint8Array(0);
  const reader = req.body.getReader();
  const parts: Uint8Array[] = [];
  let n = 0;
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      n += value.length;
      if (n > max) {
        await reader.cancel().catch(() => {});
        return null;
      }
      parts.push(value);
    }
  } finally {
    reader.releaseLock();
  }
  const out = new Uint8Array(n);
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}
