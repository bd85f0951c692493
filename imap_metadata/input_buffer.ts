/**
 * @module
 * {@link InputBuffer}: the bytes a peer sent that are not consumed yet, in
 * one growable store. Appending copies only the new bytes (the store doubles
 * when full, and is compacted only when at most half of it is live), so a
 * line that arrives one byte per read costs time linear in its length, not
 * quadratic as re-concatenating the whole buffer on every read did (issue 9).
 * Pure: no I/O.
 *
 * The store is at most about four times the largest amount ever held at
 * once; callers bound that (line and literal limits). An emptied buffer
 * larger than {@link KEEP_BYTES} drops its store, so idle sessions stay small.
 */

/** Capacity an empty buffer may keep for the next reads. */
export const KEEP_BYTES = 16 * 1024;

const EMPTY = new Uint8Array(0);

/**
 * A FIFO of bytes with amortized O(1) append per byte.
 *
 * @example
 * ```ts
 * import { InputBuffer } from "./input_buffer.ts";
 * const b = new InputBuffer();
 * b.push(new TextEncoder().encode("a1 NOOP\r"));
 * b.push(new TextEncoder().encode("\nrest"));
 * const lf = b.indexOf(0x0a);
 * b.consume(lf + 1);
 * if (new TextDecoder().decode(b.view()) !== "rest") throw new Error("fifo");
 * ```
 */
export class InputBuffer {
  #store: Uint8Array = EMPTY;
  #start = 0;
  #end = 0;
  /** Bytes copied by {@link push} (new bytes plus compaction and growth copies), for tests of the cost. */
  copied = 0;

  /** Unconsumed bytes. */
  get length(): number {
    return this.#end - this.#start;
  }

  /** Bytes the store holds (live or not). */
  get capacity(): number {
    return this.#store.length;
  }

  /**
   * The unconsumed bytes, without copying. The view is valid only until the
   * next {@link push}: copy anything that must outlive it.
   */
  view(): Uint8Array {
    return this.#store.subarray(this.#start, this.#end);
  }

  /** Byte at offset `i` of the unconsumed bytes (undefined past the end). */
  at(i: number): number | undefined {
    return i >= 0 && i < this.length ? this.#store[this.#start + i] : undefined;
  }

  /** First offset of `byte` at or after `from`, or -1. */
  indexOf(byte: number, from = 0): number {
    const i = this.#store.subarray(this.#start, this.#end).indexOf(byte, from);
    return i;
  }

  /** Appends a copy of `chunk`. */
  push(chunk: Uint8Array): void {
    const n = chunk.length;
    if (n === 0) return;
    const live = this.length;
    if (this.#end + n > this.#store.length) {
      const cap = this.#store.length;
      if (live + n <= cap / 2) {
        // Compact: cheap, because at least half the store is free and gets filled before the next compaction.
        this.#store.copyWithin(0, this.#start, this.#end);
        this.copied += live;
      } else {
        const next = new Uint8Array(Math.max(cap * 2, live + n, 256));
        next.set(this.#store.subarray(this.#start, this.#end));
        this.copied += live;
        this.#store = next;
      }
      this.#start = 0;
      this.#end = live;
    }
    this.#store.set(chunk, this.#end);
    this.#end += n;
    this.copied += n;
  }

  /** Puts `bytes` back in front of the unconsumed bytes (costs a copy of both; for rare hand-backs). */
  prepend(bytes: Uint8Array): void {
    if (bytes.length === 0) return;
    const rest = this.view();
    const next = new Uint8Array(Math.max(bytes.length + rest.length, 256));
    next.set(bytes);
    next.set(rest, bytes.length);
    this.copied += bytes.length + rest.length;
    this.#store = next;
    this.#start = 0;
    this.#end = bytes.length + rest.length;
  }

  /** Drops the first `n` unconsumed bytes. */
  consume(n: number): void {
    this.#start += Math.min(n, this.length);
    if (this.#start === this.#end) this.#reset();
  }

  /** Removes and returns every unconsumed byte (a copy the caller owns). */
  take(): Uint8Array {
    const out = this.view().slice();
    this.#reset();
    return out;
  }

  #reset(): void {
    this.#start = 0;
    this.#end = 0;
    if (this.#store.length > KEEP_BYTES) this.#store = EMPTY;
  }
}
