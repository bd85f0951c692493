/**
 * @module
 * The shared buffering of the incremental frame readers (derp stream and
 * WebSocket): socket chunks in, complete frames out as views, copying only
 * the bytes of a frame that straddles two chunks.
 *
 * The caller reuses its read buffer, so a frame left incomplete at the end
 * of a chunk is copied into storage this reader owns. When the next chunk
 * arrives, only the bytes that complete that frame are copied after it;
 * every following frame is read straight from the caller's chunk. (Copying
 * the whole next chunk behind the partial frame would be simpler, and cost
 * one extra copy of every forwarded byte.)
 *
 * Memory follows what ARRIVED, never what a header announces: a 5-byte
 * derp header announcing 1 MiB followed by silence holds a few bytes, not
 * 1 MiB (storage grows at most to twice the bytes held, capped by the
 * announced size), and storage larger than {@link STORE_KEEP_BYTES} is
 * dropped once the frame it held has been consumed.
 */

const EMPTY = new Uint8Array(0);

/** Owned storage up to this size is kept for the next straddling frame; larger is freed after use. */
export const STORE_KEEP_BYTES = 64 * 1024;
/** Smallest owned storage allocated, bytes. */
const STORE_MIN_BYTES = 4096;

/** Buffered bytes plus a read position, fed chunk by chunk. */
export class ChunkReader {
  /** Current bytes: the caller's chunk, or the start of a straddling frame in owned storage. */
  buf: Uint8Array = EMPTY;
  /** Offset of the first unread byte in {@link buf}. */
  pos = 0;
  /** Owned storage for a straddling frame. */
  #store: Uint8Array | null = null;
  /** The rest of the caller's chunk, to read after {@link buf}. */
  #next: Uint8Array | null = null;

  /** Appends a chunk. Views handed out earlier become invalid. */
  push(chunk: Uint8Array): void {
    if (this.pos < this.buf.length) {
      // A partial frame waits in owned storage: it is completed from this chunk on demand.
      this.#next = chunk;
    } else {
      this.buf = chunk;
      this.pos = 0;
    }
  }

  /** Unread byte count (current segment plus what follows). */
  get available(): number {
    return this.buf.length - this.pos + (this.#next?.length ?? 0);
  }

  /**
   * Call when the next frame is incomplete. `want` is the frame's total size
   * if known, else the size needed to learn it (its header).
   *
   * @returns true if more bytes are now in {@link buf} (parse again), false
   *   if the reader must wait for the next {@link push}
   */
  keep(want: number): boolean {
    const rest = this.buf.subarray(this.pos);
    const next = this.#next;
    if (rest.length === 0) this.#shrink();
    if (next === null) {
      // Only what arrived is kept; `want` may be a length the peer merely announced.
      this.#own(rest, rest.length, want);
      return false;
    }
    if (rest.length === 0) {
      // Nothing partial: continue straight from the caller's chunk.
      this.buf = next;
      this.pos = 0;
      this.#next = null;
      return true;
    }
    // Append just enough of the next chunk to complete the frame (or all of it, if short).
    const k = Math.min(Math.max(want - rest.length, 1), next.length);
    const store = this.#own(rest, rest.length + k, want);
    store.set(next.subarray(0, k), rest.length);
    this.buf = store.subarray(0, rest.length + k);
    this.#next = k < next.length ? next.subarray(k) : null;
    return true;
  }

  /** Frees owned storage that outgrew {@link STORE_KEEP_BYTES} once nothing partial is in it. */
  #shrink(): void {
    if (this.#store !== null && this.#store.length > STORE_KEEP_BYTES) this.#store = null;
  }

  /** Bytes of owned storage (for tests of the memory bound). */
  get storeBytes(): number {
    return this.#store?.length ?? 0;
  }

  /**
   * Moves `rest` to the front of owned storage of at least `size` bytes; `buf`
   * becomes it. Growth is geometric (at most twice `size`) but never beyond
   * `want`, the frame's total size, so storage stays within twice the
   * bytes that arrived.
   */
  #own(rest: Uint8Array, size: number, want: number): Uint8Array {
    this.pos = 0;
    if (rest.length === 0) {
      this.buf = EMPTY;
      return this.#store ?? EMPTY;
    }
    let store = this.#store;
    if (
      store !== null && rest.buffer === store.buffer && rest.byteOffset === store.byteOffset && store.length >= size
    ) {
      this.buf = rest; // already at the front of our storage
      return store;
    }
    if (store === null || store.length < size) {
      store = new Uint8Array(Math.max(size, Math.min(want, 2 * size), STORE_MIN_BYTES));
    }
    // `set` copes with `rest` overlapping `store`: the source is cloned first.
    store.set(rest);
    this.#store = store;
    this.buf = store.subarray(0, rest.length);
    return store;
  }
}
