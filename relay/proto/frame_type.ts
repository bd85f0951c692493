/**
 * @module
 * Frame type numbers of both relay protocol generations, defined once so a
 * number is never reused by accident.
 *
 * The two generations share the routing model but not the numbering: only 4
 * and 8 keep a similar meaning, and 13 is Pong in 0.35 but Status in 1.x, so
 * a frame must never be encoded with the other generation's table.
 *
 * Source: spec `iroh-relay-protocol.md` §2.2 (`protos/relay.rs @v0.35.0`) and
 * §2.3 (`protos/common.rs @v1.0.3`).
 */

/** iroh 0.35 ("derp") frame types: `[type u8][len u32 BE][payload]`. */
export const DerpFrame = {
  /** C→S, first frame: magic, key, signature, postcard `{version}`. */
  ClientInfo: 2,
  /** C→S: dst key (32) + packet. */
  SendPacket: 4,
  /** S→C: src key (32) + packet. */
  RecvPacket: 5,
  /** S→C: empty. Never sent by us. */
  KeepAlive: 6,
  /** C→S: one byte 0 or 1. Ignored. */
  NotePreferred: 7,
  /** S→C: key (32) of a peer that disconnected. */
  PeerGone: 8,
  /** Both: 8 opaque bytes. */
  Ping: 12,
  /** Both: the 8 bytes of the Ping being answered. */
  Pong: 13,
  /** S→C: UTF-8 text. Closes the connection when a client sends it. */
  Health: 14,
  /** S→C: two u32 BE milliseconds. Never sent by us. */
  Restarting: 15,
} as const;

/** iroh 1.x frame types: a QUIC varint type, then the payload, one per WebSocket message. */
export const V1Frame = {
  /** S→C: 16 random bytes. */
  ServerChallenge: 0,
  /** C→S: key (32) + 0x40 + signature (64). */
  ClientAuth: 1,
  /** S→C: empty. */
  ServerConfirmsAuth: 2,
  /** S→C: varint length + UTF-8 reason. */
  ServerDeniesAuth: 3,
  /** C→S: dst key + ECN + contents. */
  ClientToRelayDatagram: 4,
  /** C→S: dst key + ECN + segment size (u16 BE) + contents. */
  ClientToRelayDatagramBatch: 5,
  /** S→C: src key + ECN + contents. */
  RelayToClientDatagram: 6,
  /** S→C: src key + ECN + segment size + contents. */
  RelayToClientDatagramBatch: 7,
  /** S→C: key (32) of an endpoint that left. */
  EndpointGone: 8,
  /** Both: 8 opaque bytes. */
  Ping: 9,
  /** Both: the 8 bytes of the Ping being answered. */
  Pong: 10,
  /** S→C, `iroh-relay-v1` only: UTF-8 text. A v2 client treats it as fatal. */
  Health: 11,
  /** S→C: two u32 BE milliseconds. Never sent by us. */
  Restarting: 12,
  /** S→C, `iroh-relay-v2` only: one status byte. A v1 client treats it as fatal. */
  Status: 13,
} as const;

/** Values of the 1.x `Status` frame. */
export const RelayStatus = {
  /** The connection is the active one for its key. */
  Healthy: 0,
  /** A newer connection with the same key took over; this one gets no datagrams. */
  SameEndpointIdConnected: 1,
} as const;

/** Largest derp frame payload (0.35 `MAX_FRAME_SIZE`), in bytes. */
export const MAX_FRAME_SIZE = 1024 * 1024;

/** Largest packet or frame body after the type byte (`MAX_PACKET_SIZE`), in bytes. */
export const MAX_PACKET_SIZE = 64 * 1024;

/** Length of an Ed25519 public key (NodeId / EndpointId), in bytes. */
export const KEY_LEN = 32;

/** Length of a Ping or Pong payload, in bytes. */
export const PING_LEN = 8;
