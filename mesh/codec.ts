/**
 * @module
 * Wire format of the instance mesh (see `mesh.ts`): what one relay instance
 * sends another through Redis pub/sub or Deno KV. Pure: bytes in, bytes or
 * sink calls out; no I/O.
 *
 * Every message is one tag byte and fixed fields, so the datagram path is
 * a header write plus one copy of the contents (no JSON, no base64):
 *
 * ```
 * datagram  01 | dst key (32) | src key (32) | ecn (1) | segment size (u16 BE, 0 = one datagram) | contents
 * gone      02 | dst key (32) | gone key (32)
 * claimed   03 | key (32) | claiming instance id (UTF-8, 1..64 bytes)
 * ```
 *
 * `gone` tells the holder of `dst` that `gone` left (EndpointGone/PeerGone,
 * spec §4). `claimed` tells the previous holder of `key` that the key
 * connected on the instance named in it; the id lets an instance ignore its
 * own notices. Tags are never reused; a receiver counts and skips unknown
 * ones, so a newer instance may add message kinds.
 *
 * Backends that store several messages in one value (Deno KV) frame them as
 * `u32 BE length | message`, repeated ({@link frameMessages}).
 */

import { KEY_LEN, type MeshSink } from "../relay/mod.ts";

/** Tag of a datagram message. */
export const MESH_DATAGRAM = 0x01;
/** Tag of a gone notice. */
export const MESH_GONE = 0x02;
/** Tag of a claimed notice. */
export const MESH_CLAIMED = 0x03;

/** Bytes before the contents of a datagram message: tag, two keys, ecn, segment size. */
export const MESH_DATAGRAM_HEADER_LEN = 1 + 2 * KEY_LEN + 1 + 2;
/** Length of a gone message. */
export const MESH_GONE_LEN = 1 + 2 * KEY_LEN;
/** Longest instance id, bytes (keeps claimed notices and KV keys small). */
export const MAX_INSTANCE_ID_LEN = 64;

/** A decoded mesh message; byte fields are views into the decoded buffer. */
export type MeshMsg =
  | { type: "datagram"; dst: Uint8Array; src: Uint8Array; ecn: number; segmentSize: number; contents: Uint8Array }
  | { type: "gone"; dst: Uint8Array; gone: Uint8Array }
  | { type: "claimed"; key: Uint8Array; by: Uint8Array };

/** Length of the datagram message for `contentsLen` bytes of contents. */
export function meshDatagramLen(contentsLen: number): number {
  return MESH_DATAGRAM_HEADER_LEN + contentsLen;
}

/**
 * Writes a datagram message into `buf` at `off` (the caller reserved
 * {@link meshDatagramLen} bytes); `contents` is `src[start..end]`.
 * @returns the offset after it
 */
export function writeMeshDatagram(
  buf: Uint8Array,
  off: number,
  dst: Uint8Array,
  src: Uint8Array,
  ecn: number,
  segmentSize: number,
  contents: Uint8Array,
): number {
  buf[off] = MESH_DATAGRAM;
  buf.set(dst.subarray(0, KEY_LEN), off + 1);
  buf.set(src.subarray(0, KEY_LEN), off + 1 + KEY_LEN);
  buf[off + 1 + 2 * KEY_LEN] = ecn;
  buf[off + 2 + 2 * KEY_LEN] = segmentSize >>> 8;
  buf[off + 3 + 2 * KEY_LEN] = segmentSize & 0xff;
  buf.set(contents, off + MESH_DATAGRAM_HEADER_LEN);
  return off + MESH_DATAGRAM_HEADER_LEN + contents.length;
}

/** A datagram message in a new buffer. */
export function encodeMeshDatagram(
  dst: Uint8Array,
  src: Uint8Array,
  ecn: number,
  segmentSize: number,
  contents: Uint8Array,
): Uint8Array {
  const out = new Uint8Array(meshDatagramLen(contents.length));
  writeMeshDatagram(out, 0, dst, src, ecn, segmentSize, contents);
  return out;
}

/** A gone message: `gone` left; the holder of `dst` should tell it. */
export function encodeMeshGone(dst: Uint8Array, gone: Uint8Array): Uint8Array {
  const out = new Uint8Array(MESH_GONE_LEN);
  out[0] = MESH_GONE;
  out.set(dst.subarray(0, KEY_LEN), 1);
  out.set(gone.subarray(0, KEY_LEN), 1 + KEY_LEN);
  return out;
}

/**
 * A claimed message: `key` connected on instance `by`.
 * @throws {RangeError} `by` is empty or longer than {@link MAX_INSTANCE_ID_LEN}
 */
export function encodeMeshClaimed(key: Uint8Array, by: Uint8Array): Uint8Array {
  if (by.length === 0 || by.length > MAX_INSTANCE_ID_LEN) {
    throw new RangeError(`Instance id must be 1 to ${MAX_INSTANCE_ID_LEN} bytes: got ${by.length}`);
  }
  const out = new Uint8Array(1 + KEY_LEN + by.length);
  out[0] = MESH_CLAIMED;
  out.set(key.subarray(0, KEY_LEN), 1);
  out.set(by, 1 + KEY_LEN);
  return out;
}

/**
 * Decodes one message; byte fields are views into `b`.
 * @throws {SyntaxError} unknown tag; {RangeError} wrong length for the tag
 */
export function decodeMesh(b: Uint8Array): MeshMsg {
  const tag = b[0];
  switch (tag) {
    case MESH_DATAGRAM: {
      if (b.length < MESH_DATAGRAM_HEADER_LEN) {
        throw new RangeError(`Mesh datagram too short: ${b.length} bytes, header is ${MESH_DATAGRAM_HEADER_LEN}`);
      }
      return {
        type: "datagram",
        dst: b.subarray(1, 1 + KEY_LEN),
        src: b.subarray(1 + KEY_LEN, 1 + 2 * KEY_LEN),
        ecn: b[1 + 2 * KEY_LEN]!,
        segmentSize: (b[2 + 2 * KEY_LEN]! << 8) | b[3 + 2 * KEY_LEN]!,
        contents: b.subarray(MESH_DATAGRAM_HEADER_LEN),
      };
    }
    case MESH_GONE:
      if (b.length !== MESH_GONE_LEN) throw new RangeError(`Mesh gone must be ${MESH_GONE_LEN} bytes: got ${b.length}`);
      return { type: "gone", dst: b.subarray(1, 1 + KEY_LEN), gone: b.subarray(1 + KEY_LEN) };
    case MESH_CLAIMED: {
      const idLen = b.length - 1 - KEY_LEN;
      if (idLen < 1 || idLen > MAX_INSTANCE_ID_LEN) {
        throw new RangeError(`Mesh claimed must be ${2 + KEY_LEN} to ${1 + KEY_LEN + MAX_INSTANCE_ID_LEN} bytes`);
      }
      return { type: "claimed", key: b.subarray(1, 1 + KEY_LEN), by: b.subarray(1 + KEY_LEN) };
    }
    default:
      throw new SyntaxError(tag === undefined ? "Empty mesh message" : `Unknown mesh message tag 0x${hex2(tag)}`);
  }
}

function hex2(n: number): string {
  return n.toString(16).padStart(2, "0");
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** What {@link dispatchMesh} did with a message. */
export type DispatchResult = "datagram" | "gone" | "claimed" | "own-claim";

/**
 * Decodes `b` and calls the matching `sink` method. A claimed notice from
 * `self` (our own, echoed back by the backend) is skipped.
 *
 * Datagram fields are passed as views into `b`, valid only during the
 * call (the core copies them into the receiver's queue at once); gone and
 * claimed keys are copies, since they are rare and may be kept.
 *
 * @throws {SyntaxError | RangeError} as {@link decodeMesh}
 */
export function dispatchMesh(b: Uint8Array, sink: MeshSink, self: Uint8Array): DispatchResult {
  const m = decodeMesh(b);
  switch (m.type) {
    case "datagram":
      sink.datagram(m.dst, m.src, m.ecn, m.segmentSize, m.contents);
      return "datagram";
    case "gone":
      sink.gone(m.dst.slice(), m.gone.slice());
      return "gone";
    case "claimed":
      if (sameBytes(m.by, self)) return "own-claim";
      sink.claimed(m.key.slice());
      return "claimed";
  }
}

/** Bytes of the length prefix of a framed message. */
export const FRAME_PREFIX_LEN = 4;

/** Frames `msgs` as `u32 BE length | message`, repeated, in one buffer. */
export function frameMessages(msgs: readonly Uint8Array[]): Uint8Array {
  let n = 0;
  for (const m of msgs) n += FRAME_PREFIX_LEN + m.length;
  const out = new Uint8Array(n);
  let off = 0;
  for (const m of msgs) {
    out[off] = m.length >>> 24;
    out[off + 1] = (m.length >>> 16) & 0xff;
    out[off + 2] = (m.length >>> 8) & 0xff;
    out[off + 3] = m.length & 0xff;
    out.set(m, off + FRAME_PREFIX_LEN);
    off += FRAME_PREFIX_LEN + m.length;
  }
  return out;
}

/**
 * The messages of a {@link frameMessages} buffer, as views into `b`.
 * @throws {RangeError} a length runs past the end
 */
export function unframeMessages(b: Uint8Array): Uint8Array[] {
  const out: Uint8Array[] = [];
  let off = 0;
  while (off < b.length) {
    if (b.length - off < FRAME_PREFIX_LEN) throw new RangeError(`Truncated frame prefix at offset ${off}`);
    const len = ((b[off]! << 24) >>> 0) + (b[off + 1]! << 16) + (b[off + 2]! << 8) + b[off + 3]!;
    off += FRAME_PREFIX_LEN;
    if (len > b.length - off) throw new RangeError(`Frame of ${len} bytes at offset ${off} runs past the end`);
    out.push(b.subarray(off, off + len));
    off += len;
  }
  return out;
}
