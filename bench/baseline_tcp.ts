/**
 * @module
 * Baseline for the 0.35 derp path: the thinnest Deno TCP forwarder that
 * keeps 5-byte framing (`[type u8][len u32 BE][payload]`). A connection
 * first sends a hello frame (type 2, 8 bytes: its id as u32 BE, then 4
 * unused bytes); after that, each complete frame is written unchanged to the
 * connection whose id is in the first 4 payload bytes (where a SendPacket
 * carries its destination key). No HTTP, no authentication, no per-frame
 * objects.
 *
 * Routing is per frame, as a relay's must be, but consecutive frames for the
 * same destination go out in one write (the relay batches per receiver too),
 * straight from the read buffer and awaited before the next read: TCP
 * backpressure with no copy and no queue. Writes to one receiver from
 * several senders (fan-in) are serialized, so a partial write cannot
 * interleave with another sender's frames; they are not merged. The relay's throughput is reported
 * as a ratio against this. Prints `{"event":"listening","port":N}`.
 */

/** Largest frame accepted, bytes (the derp limit, 1 MiB, plus the header). */
const MAX_FRAME = (1 << 20) + 5;

/** Connections by id. */
const conns = new Map<number, Deno.Conn>();
/** The last write queued per connection: writes from several senders (fan-in) must not interleave. */
const tails = new Map<Deno.Conn, Promise<void>>();

async function writeAll(conn: Deno.Conn, data: Uint8Array): Promise<void> {
  let off = 0;
  while (off < data.length) off += await conn.write(data.subarray(off));
}

/** Writes `frames` to connection `to` after its earlier writes, if it exists; write errors are the receiver's problem. */
function forward(to: number, frames: Uint8Array): Promise<void> {
  const peer = conns.get(to);
  if (peer === undefined) return Promise.resolve();
  const prev = tails.get(peer);
  const p = (prev === undefined ? writeAll(peer, frames) : prev.then(() => writeAll(peer, frames))).catch(() => {});
  tails.set(peer, p);
  p.then(() => {
    if (tails.get(peer) === p) tails.delete(peer);
  });
  return p;
}

async function serve(conn: Deno.TcpConn): Promise<void> {
  conn.setNoDelay(true);
  let buf = new Uint8Array(256 * 1024);
  let hi = 0;
  let me = -1;
  try {
    for (;;) {
      const n = await conn.read(buf.subarray(hi));
      if (n === null) return;
      hi += n;
      let p = 0;
      if (me < 0) {
        if (hi < 13) continue;
        const dv = new DataView(buf.buffer, 0, 13);
        me = dv.getUint32(5);
        conns.set(me, conn);
        p = 13;
      }
      // Forward each run of complete frames that share a destination.
      let end = p;
      let runStart = p;
      let runTo = -1;
      while (hi - end >= 9) {
        const len = ((buf[end + 1]! << 24) >>> 0) + (buf[end + 2]! << 16) + (buf[end + 3]! << 8) + buf[end + 4]!;
        if (len + 5 > MAX_FRAME) return;
        if (hi - end < 5 + len) break;
        const to = ((buf[end + 5]! << 24) >>> 0) + (buf[end + 6]! << 16) + (buf[end + 7]! << 8) + buf[end + 8]!;
        if (to !== runTo) {
          if (end > runStart) await forward(runTo, buf.subarray(runStart, end));
          runStart = end;
          runTo = to;
        }
        end += 5 + len;
      }
      if (end > runStart) await forward(runTo, buf.subarray(runStart, end));
      buf.copyWithin(0, end, hi);
      hi -= end;
      if (buf.length - hi < 2048) {
        const grown = new Uint8Array(buf.length * 2);
        grown.set(buf.subarray(0, hi));
        buf = grown;
      }
    }
  } catch {
    // peer gone
  } finally {
    if (conns.get(me) === conn) conns.delete(me);
    try {
      conn.close();
    } catch {
      // already closed
    }
  }
}

if (import.meta.main) {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  console.log(JSON.stringify({ event: "listening", port: (listener.addr as Deno.NetAddr).port }));
  for await (const conn of listener) serve(conn);
}
