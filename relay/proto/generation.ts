/**
 * @module
 * Per-connection protocol adapters: the one place that knows which frame
 * vocabulary a connection speaks. The relay core asks its connection's
 * {@link Generation} to read client frames into generation-neutral
 * {@link Inbound} actions and to build the messages it sends, so it never
 * emits a frame type of the wrong generation (spec §2.2: 0.35 clients treat
 * unknown types as fatal, and numbers collide, 13 = Pong vs Status).
 *
 * Three instances: {@link DERP} (iroh 0.35, either framing), {@link V1} and
 * {@link V2} (iroh 1.x subprotocols `iroh-relay-v1` / `iroh-relay-v2`).
 */

import { decodeDerp, derpFrameType, type DerpMsg, derpPayloadLen, derpWritePayload } from "./codec_derp.ts";
import { decodeV1Payload, readV1Type, v1FrameType, type V1Msg, v1PayloadLen, v1WritePayload } from "./codec_v1.ts";
import { DerpFrame, KEY_LEN, MAX_PACKET_SIZE, RelayStatus, V1Frame } from "./frame_type.ts";
import { CLIENT_INFO_TIMEOUT_MS } from "./handshake.ts";

/** What the relay core does with one frame from an authenticated client. */
export type Inbound =
  | { kind: "datagram"; dstKey: Uint8Array; ecn: number; segmentSize: number; contents: Uint8Array }
  | { kind: "ping"; data: Uint8Array }
  | { kind: "pong"; data: Uint8Array }
  | { kind: "ignore"; frame: string }
  | { kind: "close"; reason: string };

/** A message in the connection's own vocabulary. */
export type WireMsg = DerpMsg | V1Msg;

/** Metric/log label of a generation. */
export type GenerationName = "0.35" | "1.x";

/**
 * How a connection authenticates: `client-info` (0.35: the client speaks
 * first with a sealed ClientInfo; nothing is sent on success) or
 * `challenge` (1.x: the server sends ServerChallenge, reads ClientAuth and
 * answers ServerConfirmsAuth / ServerDeniesAuth).
 */
export type HandshakeKind = "client-info" | "challenge";

/** What happens to the older connection when a key connects again. */
export type DuplicateKeyRule = "close-old" | "demote-old";

/** The frame vocabulary a connection speaks. */
export interface Generation {
  /** `0.35` or `1.x`. */
  readonly name: GenerationName;
  /** Subprotocol for 1.x (`iroh-relay-v1`/`-v2`), empty for 0.35. */
  readonly subprotocol: string;
  /** True if the type is a varint (1.x) rather than one byte. */
  readonly varintType: boolean;
  /** Which handshake the connection runs. */
  readonly handshake: HandshakeKind;
  /**
   * Longest wait for the first (authentication) frame after the upgrade, ms,
   * on top of the server's establish timeout: {@link CLIENT_INFO_TIMEOUT_MS}
   * for 0.35, none (Infinity) for 1.x, whose handshake the server opens.
   */
  readonly authTimeoutMs: number;
  /**
   * True if a datagram frame from a client of this generation is, byte for
   * byte, the frame its receiver of this generation gets except for the
   * type and the key (0.35 SendPacket → RecvPacket): consecutive frames can
   * then be forwarded as one copied run when both ends use the derp stream.
   */
  readonly makesRuns: boolean;
  /**
   * True if the pong wait follows the measured round trip (1.x:
   * `clamp(3 × RTT, …)`); false for a fixed wait (0.35).
   */
  readonly pongTimeoutFromRtt: boolean;
  /** 0.35 closes the older connection of a key; 1.x keeps it inactive and tells it so. */
  readonly duplicateKey: DuplicateKeyRule;
  /**
   * Default burst of the per-client receive limit for a rate of
   * `bytesPerSecond`: a whole second for 0.35, a tenth of one for 1.x
   * (each as upstream does).
   */
  rxBurstBytes(bytesPerSecond: number): number;
  /**
   * Reads a client frame after the handshake.
   * @throws {SyntaxError | RangeError} malformed frame: the connection closes
   */
  inbound(type: number, payload: Uint8Array): Inbound;
  /** Decodes the first (authentication) frame. */
  decodeAuth(type: number, payload: Uint8Array): WireMsg;
  /** True if a datagram of `contentsLen` bytes (and segment size) can be sent to this connection. */
  datagramFits(contentsLen: number, segmentSize: number): boolean;
  /** Frame type of a datagram to this connection. */
  datagramType(segmentSize: number): number;
  /** Payload bytes before a datagram's contents: source key, and for 1.x ECN (and segment size). */
  datagramHeaderLen(segmentSize: number): number;
  /** Writes those bytes at `buf[off..]`. */
  writeDatagramHeader(buf: Uint8Array, off: number, srcKey: Uint8Array, ecn: number, segmentSize: number): void;
  /** Notice that `key` left (PeerGone / EndpointGone). */
  gone(key: Uint8Array): WireMsg;
  /** Server ping. */
  ping(data: Uint8Array): WireMsg;
  /** Answer to a client ping. */
  pong(data: Uint8Array): WireMsg;
  /** Active/inactive notice for duplicate keys, or null if the generation has none. */
  status(status: number): WireMsg | null;
  /** Frame type number of `msg`. */
  frameType(msg: WireMsg): number;
  /** Payload length of `msg`, in bytes. */
  payloadLen(msg: WireMsg): number;
  /** Writes the payload of `msg` at `buf[off..]`. */
  writePayload(msg: WireMsg, buf: Uint8Array, off: number): void;
}

/** iroh 0.35: ClientInfo auth, SendPacket/RecvPacket, PeerGone, Health. */
export const DERP: Generation = {
  name: "0.35",
  subprotocol: "",
  varintType: false,
  handshake: "client-info",
  authTimeoutMs: CLIENT_INFO_TIMEOUT_MS,
  makesRuns: true,
  pongTimeoutFromRtt: false,
  duplicateKey: "close-old",
  rxBurstBytes: (bytesPerSecond) => bytesPerSecond,
  inbound(type, payload) {
    const msg = decodeDerp(type, payload);
    switch (msg.type) {
      case "SendPacket":
        return { kind: "datagram", dstKey: msg.dstKey, ecn: 0, segmentSize: 0, contents: msg.packet };
      case "Ping":
        return { kind: "ping", data: msg.data };
      case "Pong":
        return { kind: "pong", data: msg.data };
      case "Health":
        // Upstream closes a client that sends Health: only servers send it.
        return { kind: "close", reason: "client sent Health" };
      default:
        return { kind: "ignore", frame: msg.type };
    }
  },
  decodeAuth: decodeDerp,
  datagramFits: (contentsLen) => contentsLen <= MAX_PACKET_SIZE,
  datagramType: () => DerpFrame.RecvPacket,
  datagramHeaderLen: () => KEY_LEN,
  // 0.35 has no ECN or segmentation: the contents travel as one opaque packet.
  writeDatagramHeader(buf, off, srcKey) {
    buf.set(srcKey, off);
  },
  gone: (key) => ({ type: "PeerGone", key }),
  ping: (data) => ({ type: "Ping", data }),
  pong: (data) => ({ type: "Pong", data }),
  status: () => null,
  frameType: (msg) => derpFrameType(msg as DerpMsg),
  payloadLen: (msg) => derpPayloadLen(msg as DerpMsg),
  writePayload: (msg, buf, off) => derpWritePayload(msg as DerpMsg, buf, off),
};

/** Health texts a v1 client gets where a v2 client gets Status (spec §4). */
const V1_STATUS_TEXT: Record<number, string> = {
  [RelayStatus.Healthy]: "The connection is healthy and has recovered from previous problems",
  [RelayStatus.SameEndpointIdConnected]:
    "Another endpoint connected with the same endpoint id. No more messages will be received.",
};

function v1x(version: 1 | 2): Generation {
  return {
    name: "1.x",
    subprotocol: `iroh-relay-v${version}`,
    varintType: true,
    handshake: "challenge",
    authTimeoutMs: Infinity,
    makesRuns: false,
    pongTimeoutFromRtt: true,
    duplicateKey: "demote-old",
    rxBurstBytes: (bytesPerSecond) => Math.max(1, bytesPerSecond / 10),
    inbound(type, payload) {
      const msg = decodeV1Payload(type, payload, version);
      switch (msg.type) {
        case "ClientToRelayDatagram":
          return { kind: "datagram", dstKey: msg.dstKey, ecn: msg.ecn, segmentSize: 0, contents: msg.contents };
        case "ClientToRelayDatagramBatch":
          return {
            kind: "datagram",
            dstKey: msg.dstKey,
            ecn: msg.ecn,
            segmentSize: msg.segmentSize,
            contents: msg.contents,
          };
        case "Ping":
          return { kind: "ping", data: msg.data };
        case "Pong":
          return { kind: "pong", data: msg.data };
        default:
          // Upstream accepts only 4, 5, 9 and 10 after the handshake.
          return { kind: "close", reason: `unexpected ${msg.type} frame` };
      }
    },
    decodeAuth: (type, payload) => decodeV1Payload(type, payload, version),
    // The whole R2C frame, type byte included, must fit MAX_PACKET_SIZE, and
    // contents must not be empty, or the receiving client drops its
    // connection (spec §2.3): such datagrams are dropped here instead.
    datagramFits: (contentsLen, segmentSize) =>
      contentsLen > 0 && 1 + KEY_LEN + 1 + (segmentSize === 0 ? 0 : 2) + contentsLen <= MAX_PACKET_SIZE,
    datagramType: (segmentSize) =>
      segmentSize === 0 ? V1Frame.RelayToClientDatagram : V1Frame.RelayToClientDatagramBatch,
    datagramHeaderLen: (segmentSize) => KEY_LEN + 1 + (segmentSize === 0 ? 0 : 2),
    writeDatagramHeader(buf, off, srcKey, ecn, segmentSize) {
      buf.set(srcKey, off);
      buf[off + KEY_LEN] = ecn & 3;
      if (segmentSize !== 0) {
        buf[off + KEY_LEN + 1] = segmentSize >>> 8;
        buf[off + KEY_LEN + 2] = segmentSize & 0xff;
      }
    },
    gone: (key) => ({ type: "EndpointGone", key }),
    ping: (data) => ({ type: "Ping", data }),
    pong: (data) => ({ type: "Pong", data }),
    status: (status) =>
      version === 2
        ? { type: "Status", status }
        : { type: "Health", problem: V1_STATUS_TEXT[status] ?? `status ${status}` },
    frameType: (msg) => v1FrameType(msg as V1Msg),
    payloadLen: (msg) => v1PayloadLen(msg as V1Msg),
    writePayload: (msg, buf, off) => v1WritePayload(msg as V1Msg, buf, off),
  };
}

/** iroh 1.x, subprotocol `iroh-relay-v1` (Health, no Status). */
export const V1: Generation = v1x(1);
/** iroh 1.x, subprotocol `iroh-relay-v2` (Status, no Health). */
export const V2: Generation = v1x(2);

/**
 * Splits a WebSocket message body into frame type and payload offset: one
 * byte for 0.35, a QUIC varint for 1.x.
 * @throws {SyntaxError} empty message or truncated varint
 */
export function messageType(gen: Generation, body: Uint8Array): { type: number; offset: number } {
  if (gen.varintType) return readV1Type(body);
  if (body.length === 0) throw new SyntaxError("Empty frame");
  return { type: body[0]!, offset: 1 };
}
