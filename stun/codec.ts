/**
 * @module
 * STUN Binding requests in, Binding success responses out (RFC 5389 and the
 * RFC 3489 form it replaced), as the iroh 0.35 relay serves them (spec §5
 * "STUN"). Pure: bytes and an address in, bytes or a drop reason out.
 *
 * - RFC 5389 request (magic cookie `2112a442` in bytes 4..8): answered with
 *   one XOR-MAPPED-ADDRESS, same transaction id. iroh 0.35 clients send
 *   this (header + FINGERPRINT, 28 bytes).
 * - RFC 3489 request (no cookie: a 16-byte transaction id): answered with
 *   one MAPPED-ADDRESS (RFC 5389 §12.2), which is what such clients
 *   (e.g. Debian's `stun-client`) read.
 * - Everything else is a {@link StunDrop} and gets no reply: other methods
 *   or classes, a length field that disagrees with the datagram, truncated
 *   or overlong attributes, a FINGERPRINT that is not last or has a wrong
 *   CRC (or that appears without the cookie: a 5389 message with a wrong
 *   cookie), and requests that ask for the reply to go elsewhere or come
 *   from elsewhere (RESPONSE-ADDRESS, RESPONSE-PORT, a non-zero
 *   CHANGE-REQUEST): answering those from here would either reflect
 *   traffic at a third party or tell an RFC 3489 NAT test a lie.
 * - No amplification: the reply is at most 44 bytes (20 header + 24 for an
 *   IPv6 address), never echoes request content, and is only sent for a
 *   request of at least 20 bytes; spoofed floods are further capped per
 *   source by `rate_limit.ts`.
 *
 * Hand-written rather than a library: the whole grammar needed is a
 * 20-byte header and a type-length-value walk; the CRC-32 for FINGERPRINT
 * is a 256-entry table.
 */

/** RFC 5389 magic cookie (bytes 4..8 of every RFC 5389 message). */
export const MAGIC_COOKIE = 0x2112a442;
/** STUN header size, bytes. */
export const HEADER_BYTES = 20;
/** Largest request we parse; longer datagrams are dropped (a Binding request needs no more). */
export const MAX_REQUEST_BYTES = 1024;

const BINDING_REQUEST = 0x0001;
const BINDING_SUCCESS = 0x0101;
const ATTR_MAPPED_ADDRESS = 0x0001;
const ATTR_RESPONSE_ADDRESS = 0x0002;
const ATTR_CHANGE_REQUEST = 0x0003;
const ATTR_XOR_MAPPED_ADDRESS = 0x0020;
const ATTR_RESPONSE_PORT = 0x0027;
const ATTR_FINGERPRINT = 0x8028;
/** XORed into the CRC-32 of a FINGERPRINT attribute (RFC 5389 §15.5). */
const FINGERPRINT_XOR = 0x5354554e;

/** Why a datagram got no reply. */
export type StunDrop =
  | "not-stun"
  | "not-binding-request"
  | "bad-length"
  | "bad-attribute"
  | "bad-fingerprint"
  | "redirect-refused";

/** A Binding request worth answering. */
export interface BindingRequest {
  /** `rfc5389` (magic cookie present) or `rfc3489` (legacy 128-bit transaction id). */
  kind: "rfc5389" | "rfc3489";
  /** Bytes 4..20 of the request: the cookie plus 96-bit id, or the legacy 128-bit id. */
  transaction: Uint8Array;
}

/** Where a datagram came from, as the reply reports it. */
export interface SourceAddr {
  /** IPv4 dotted quad or IPv6 text (an IPv4-mapped IPv6 address is reported as IPv4). */
  hostname: string;
  /** UDP port. */
  port: number;
}

/**
 * True if `b` looks like a STUN message at all (upstream's `is()`): at
 * least a header, top two bits zero. The cookie is not required here, so
 * RFC 3489 requests pass; {@link parseBindingRequest} decides the rest.
 */
export function looksLikeStun(b: Uint8Array): boolean {
  return b.length >= HEADER_BYTES && (b[0]! & 0xc0) === 0;
}

/**
 * Parses a datagram as a Binding request.
 *
 * @param b the whole datagram
 * @returns the request, or why it is dropped
 */
export function parseBindingRequest(b: Uint8Array): BindingRequest | StunDrop {
  if (!looksLikeStun(b) || b.length > MAX_REQUEST_BYTES) return "not-stun";
  const v = new DataView(b.buffer, b.byteOffset, b.byteLength);
  if (v.getUint16(0) !== BINDING_REQUEST) return "not-binding-request";
  const bodyLen = v.getUint16(2);
  if (bodyLen % 4 !== 0 || HEADER_BYTES + bodyLen !== b.length) return "bad-length";
  const kind = v.getUint32(4) === MAGIC_COOKIE ? "rfc5389" : "rfc3489";
  let off = HEADER_BYTES;
  while (off < b.length) {
    if (off + 4 > b.length) return "bad-attribute";
    const type = v.getUint16(off);
    const len = v.getUint16(off + 2);
    const padded = (len + 3) & ~3;
    if (off + 4 + padded > b.length) return "bad-attribute";
    switch (type) {
      case ATTR_FINGERPRINT: {
        // RFC 5389 only, always last, CRC over everything before it.
        if (kind !== "rfc5389" || len !== 4 || off + 8 !== b.length) return "bad-fingerprint";
        if ((crc32(b.subarray(0, off)) ^ FINGERPRINT_XOR) >>> 0 !== v.getUint32(off + 4)) return "bad-fingerprint";
        break;
      }
      case ATTR_RESPONSE_ADDRESS:
      case ATTR_RESPONSE_PORT:
        return "redirect-refused";
      case ATTR_CHANGE_REQUEST:
        if (len !== 4) return "bad-attribute";
        // We have one address and port: "change IP/port" cannot be honoured truthfully.
        if ((v.getUint32(off + 4) & 0x06) !== 0) return "redirect-refused";
        break;
      default:
        // Other attributes (SOFTWARE, USERNAME, PRIORITY, …) carry nothing a reply needs.
        break;
    }
    off += 4 + padded;
  }
  return { kind, transaction: b.slice(4, HEADER_BYTES) };
}

/** Parses an IP text into 4 or 16 bytes; IPv4-mapped IPv6 becomes 4 bytes. */
export function ipBytes(hostname: string): Uint8Array {
  const host = hostname.replace(/^\[|\]$/g, "").replace(/%.*$/, "");
  if (!host.includes(":")) return ipv4Bytes(host);
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(host);
  if (mapped) return ipv4Bytes(mapped[1]!);
  let head: string[];
  let tail: string[];
  const dbl = host.indexOf("::");
  if (dbl >= 0) {
    head = host.slice(0, dbl) === "" ? [] : host.slice(0, dbl).split(":");
    tail = host.slice(dbl + 2) === "" ? [] : host.slice(dbl + 2).split(":");
  } else {
    head = host.split(":");
    tail = [];
  }
  // An embedded dotted quad at the end counts as two groups.
  const last = tail.length ? tail : head;
  const quad = last.length && last[last.length - 1]!.includes(".") ? ipv4Bytes(last.pop()!) : undefined;
  if (quad) last.push(((quad[0]! << 8) | quad[1]!).toString(16), ((quad[2]! << 8) | quad[3]!).toString(16));
  const groups = head.length + tail.length;
  if (groups > 8 || (dbl < 0 && groups !== 8)) throw new RangeError(`Not an IP address: ${hostname}`);
  const words = [...head, ...Array(8 - groups).fill("0"), ...tail];
  const out = new Uint8Array(16);
  words.forEach((w, i) => {
    if (!/^[0-9a-fA-F]{1,4}$/.test(w)) throw new RangeError(`Not an IP address: ${hostname}`);
    const n = parseInt(w, 16);
    out[2 * i] = n >> 8;
    out[2 * i + 1] = n & 0xff;
  });
  return out;
}

function ipv4Bytes(host: string): Uint8Array {
  const parts = host.split(".");
  if (parts.length !== 4 || parts.some((p) => !/^\d{1,3}$/.test(p) || Number(p) > 255)) {
    throw new RangeError(`Not an IP address: ${host}`);
  }
  return new Uint8Array(parts.map(Number));
}

/**
 * Builds the Binding success response to `req` reporting `src`:
 * XOR-MAPPED-ADDRESS for RFC 5389, MAPPED-ADDRESS for RFC 3489.
 *
 * @example
 * ```ts
 * import { encodeBindingSuccess, parseBindingRequest } from "./codec.ts";
 * const req = parseBindingRequest(new Uint8Array([0, 1, 0, 0, 0x21, 0x12, 0xa4, 0x42, ...new Uint8Array(12)]));
 * if (typeof req === "string") throw new Error(req);
 * const res = encodeBindingSuccess(req, { hostname: "1.2.3.4", port: 254 });
 * if (res.length !== 32) throw new Error("one XOR-MAPPED-ADDRESS expected");
 * ```
 */
export function encodeBindingSuccess(req: BindingRequest, src: SourceAddr): Uint8Array {
  const ip = ipBytes(src.hostname);
  const attrLen = 4 + ip.length;
  const out = new Uint8Array(HEADER_BYTES + 4 + attrLen);
  const v = new DataView(out.buffer);
  v.setUint16(0, BINDING_SUCCESS);
  v.setUint16(2, 4 + attrLen);
  out.set(req.transaction, 4);
  const a = HEADER_BYTES;
  v.setUint16(a + 4, ip.length === 4 ? 0x01 : 0x02);
  if (req.kind === "rfc5389") {
    v.setUint16(a, ATTR_XOR_MAPPED_ADDRESS);
    v.setUint16(a + 2, attrLen);
    v.setUint16(a + 6, src.port ^ (MAGIC_COOKIE >>> 16));
    // XOR key: the cookie, then (IPv6) the 96-bit transaction id: bytes 4..20 of the header.
    for (let i = 0; i < ip.length; i++) out[a + 8 + i] = ip[i]! ^ out[4 + i]!;
  } else {
    v.setUint16(a, ATTR_MAPPED_ADDRESS);
    v.setUint16(a + 2, attrLen);
    v.setUint16(a + 6, src.port);
    out.set(ip, a + 8);
  }
  return out;
}

let crcTable: Uint32Array | undefined;

/** CRC-32 (ISO-HDLC, as zlib), for FINGERPRINT. */
export function crc32(b: Uint8Array): number {
  if (!crcTable) {
    crcTable = new Uint32Array(256);
    for (let n = 0; n < 256; n++) {
      let c = n;
      for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
      crcTable[n] = c >>> 0;
    }
  }
  let c = 0xffffffff;
  for (let i = 0; i < b.length; i++) c = crcTable[(c ^ b[i]!) & 0xff]! ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

/**
 * A Binding request as iroh 0.35 sends it (header + FINGERPRINT), for tests
 * and probes.
 * @param transaction the 12-byte transaction id
 */
export function encodeBindingRequest(transaction: Uint8Array): Uint8Array {
  if (transaction.length !== 12) throw new RangeError("Transaction id must be 12 bytes");
  const out = new Uint8Array(HEADER_BYTES + 8);
  const v = new DataView(out.buffer);
  v.setUint16(0, BINDING_REQUEST);
  v.setUint16(2, 8);
  v.setUint32(4, MAGIC_COOKIE);
  out.set(transaction, 8);
  v.setUint16(HEADER_BYTES, ATTR_FINGERPRINT);
  v.setUint16(HEADER_BYTES + 2, 4);
  v.setUint32(HEADER_BYTES + 4, (crc32(out.subarray(0, HEADER_BYTES)) ^ FINGERPRINT_XOR) >>> 0);
  return out;
}

/**
 * Reads the mapped address from a Binding success response (XOR-MAPPED-ADDRESS
 * preferred, MAPPED-ADDRESS otherwise), for tests and probes.
 * @returns the address, or undefined if `b` is not such a response
 */
export function parseBindingSuccess(b: Uint8Array): SourceAddr | undefined {
  if (b.length < HEADER_BYTES) return undefined;
  const v = new DataView(b.buffer, b.byteOffset, b.byteLength);
  if (v.getUint16(0) !== BINDING_SUCCESS || HEADER_BYTES + v.getUint16(2) !== b.length) return undefined;
  let found: SourceAddr | undefined;
  for (let off = HEADER_BYTES; off + 4 <= b.length;) {
    const type = v.getUint16(off);
    const len = v.getUint16(off + 2);
    if (off + 4 + len > b.length) return undefined;
    if ((type === ATTR_XOR_MAPPED_ADDRESS || type === ATTR_MAPPED_ADDRESS) && len >= 8) {
      const family = v.getUint16(off + 4);
      const ipLen = family === 1 ? 4 : family === 2 ? 16 : 0;
      if (ipLen === 0 || len !== 4 + ipLen) return undefined;
      const xor = type === ATTR_XOR_MAPPED_ADDRESS;
      const port = v.getUint16(off + 6) ^ (xor ? MAGIC_COOKIE >>> 16 : 0);
      const ip = b.slice(off + 8, off + 8 + ipLen);
      if (xor) { for (let i = 0; i < ipLen; i++) ip[i]! ^= b[4 + i]!; }
      const addr = { hostname: ipText(ip), port };
      if (xor || !found) found = addr;
      if (xor) break;
    }
    off += 4 + ((len + 3) & ~3);
  }
  return found;
}

/** Formats 4 or 16 address bytes as text (IPv6 without zero compression). */
function ipText(ip: Uint8Array): string {
  if (ip.length === 4) return ip.join(".");
  const words: string[] = [];
  for (let i = 0; i < 16; i += 2) words.push(((ip[i]! << 8) | ip[i + 1]!).toString(16));
  return words.join(":");
}
