/**
 * @module
 * One DNS message in, one reply out (or nothing), for every transport
 * (UDP, TCP, DoH). Pure: the zone lookup is injected.
 *
 * - Fewer than 12 bytes, or a message with QR set: no reply (replying to a
 *   response could start a loop between two servers).
 * - The header's counts are checked before the library decodes anything:
 *   exactly one question, no answer/authority records, at most two
 *   additional ones (OPT, maybe a TSIG we ignore); otherwise FORMERR. So a
 *   hostile count never makes the decoder allocate or loop. An opcode other
 *   than QUERY gets NOTIMP; a body that does not decode, FORMERR.
 * - EDNS (RFC 6891): a query with OPT gets OPT back, advertising
 *   {@link EDNS_UDP_SIZE}; a UDP reply may use up to
 *   min(client's size, ours), else 512 bytes. A reply that does not fit is
 *   sent as header + question with TC set, so the client retries over TCP
 *   (RFC 1035 §4.2.1, RFC 7766).
 */

import { type Answer, decodeMessage, encodeMessage, FLAG_AA, FLAG_RD, FLAG_TC, type Packet } from "./dns_wire.ts";
import { answerQuestion, type RecordLookup, type ZoneOptions } from "./zone.ts";

/** The UDP payload size we advertise and honour at most (the 2020 DNS flag day value). */
export const EDNS_UDP_SIZE = 1232;
/** UDP reply limit without EDNS (RFC 1035). */
export const CLASSIC_UDP_SIZE = 512;
/** Largest DNS message over TCP or HTTPS (two-byte length prefix). */
export const MAX_STREAM_MESSAGE = 65535;

const RCODE: Record<string, number> = { NOERROR: 0, FORMERR: 1, SERVFAIL: 2, NXDOMAIN: 3, NOTIMP: 4, REFUSED: 5 };

/** A reply, with its rcode for metrics. */
export interface DnsReply {
  /** The encoded reply. */
  bytes: Uint8Array;
  /** Its rcode name (`NOERROR`, `NXDOMAIN`, …). */
  rcode: string;
  /** True if answers were dropped to fit the transport. */
  truncated: boolean;
}

/** Which transport a message came over: UDP replies are size-limited. */
export type DnsTransport = "udp" | "stream";

function errorReply(query: Uint8Array, rcode: string): DnsReply {
  // Header only: id and RD and opcode copied, QR set, no sections (the question may be what failed).
  const out = new Uint8Array(12);
  out[0] = query[0]!;
  out[1] = query[1]!;
  out[2] = 0x80 | (query[2]! & 0x79); // QR, opcode, RD
  out[3] = RCODE[rcode]!;
  return { bytes: out, rcode, truncated: false };
}

/**
 * Builds the reply to one DNS message.
 * @returns the reply, or null when nothing must be sent back
 */
export async function respond(
  query: Uint8Array,
  transport: DnsTransport,
  zone: ZoneOptions,
  lookup: RecordLookup,
): Promise<DnsReply | null> {
  if (query.length < 12) return null;
  if (query[2]! & 0x80) return null; // a response, not a query
  const opcode = (query[2]! >> 3) & 0xf;
  if (opcode !== 0) return errorReply(query, "NOTIMP");
  const dv = new DataView(query.buffer, query.byteOffset, query.byteLength);
  if (dv.getUint16(4) !== 1 || dv.getUint16(6) !== 0 || dv.getUint16(8) !== 0 || dv.getUint16(10) > 2) {
    return errorReply(query, "FORMERR");
  }
  let msg: Packet;
  try {
    msg = decodeMessage(query);
  } catch {
    return errorReply(query, "FORMERR");
  }
  const q = msg.questions![0]!;
  const opt = msg.additionals?.find((a) => a.type === "OPT") as { udpPayloadSize?: number } | undefined;
  const limit = transport === "stream"
    ? MAX_STREAM_MESSAGE
    : opt
    ? Math.min(Math.max(opt.udpPayloadSize ?? CLASSIC_UDP_SIZE, CLASSIC_UDP_SIZE), EDNS_UDP_SIZE)
    : CLASSIC_UDP_SIZE;
  const z = await answerQuestion(q, zone, lookup);
  const additionals: Answer[] = opt
    ? [{
      type: "OPT",
      name: ".",
      udpPayloadSize: EDNS_UDP_SIZE,
      extendedRcode: 0,
      ednsVersion: 0,
      flags: 0,
      flag_do: false,
      options: [],
    }]
    : [];
  const flags = FLAG_AA | (msg.flags! & FLAG_RD) | RCODE[z.rcode]!;
  const reply: Packet = {
    id: msg.id!,
    type: "response",
    flags,
    questions: [q],
    answers: z.answers,
    authorities: z.authorities,
    additionals,
  };
  const bytes = encodeMessage(reply);
  if (bytes.length <= limit) return { bytes, rcode: z.rcode, truncated: false };
  const cut = encodeMessage({ ...reply, flags: flags | FLAG_TC, answers: [], authorities: [] });
  return { bytes: cut, rcode: z.rcode, truncated: true };
}
