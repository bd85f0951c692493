/**
 * @module
 * The shared buffering of the incremental frame readers (derp stream and
 * WebSocket): socket chunks in, complete frames out as views, without a copy
 * unless a frame straddles two chunks.
 *
 * The caller reuses its read buffer, so whatever is left unread when a chunk
 * runs out is copied into storage this reader owns, sized once from the
 * frame header so that a large frame arriving in many chunks is not re-copied
 * for each one.
 */

/** Buffered bytes plus a read position, fed chunk by chunk. */
export class ChunkReader {
  /** Current bytes: the caller's chunk, or a prefix of owned storage. */
  buf: Uint8Array = new Uint8Array(0);
  /** Offset of the first unread byte in {@link buf}. */
  pos = 0;
  #store: Uint8Array | null = null;

  /** Appends a chunk. Views handed out earlier become invalid. */
  push(chunk: Uint8Array): void {
    if (this.#store === null) {
      this.buf = chunk;
      this.pos = 0;
      return;
    }
    const have = this.buf.length;
    const need = have + chunk.length;
    if (need > this.#store.length) {
      const grown = new Uint8Array(Math.max(need, this.#store.length * 2));
      grown.set(this.buf);
      this.#store = grown;
    }
    this.#store.set(chunk, have);
    this.buf = this.#store.subarray(0, need);
  }

  /** Unread byte count. */
  get available(): number {
    return this.buf.length - this.pos;
  }

  /**
   * Call when the next frame is incomplete: moves the unread tail into owned
   * storage able to hold at least `want` bytes (the whole frame, if known).
   */
  keep(want: number): void {
    const rest = this.buf.subarray(this.pos);
    this.pos = 0;
    if (rest.length === 0) {
      this.#store = null;
      this.buf = rest;
      return;
    }
    const store = this.#store;
    if (store !== null && store.length >= want && rest.byteOffset === store.byteOffset) {
      this.buf = rest; // already at the front of our storage
      return;
    }
    const target = store !== null && store.length >= want ? store : new Uint8Array(Math.max(want, 4096));
    // `set` copes with `rest` overlapping `target`: the source is cloned first.
    target.set(rest);
    this.#store = target;
    this.buf = target.subarray(0, rest.length);
  }
}
