/**
 * @module
 * The proxy's reply queue (spec §4.4): one entry per command in client
 * order, either forwarded (waiting for the upstream's tagged reply), our own
 * encoded reply, or an intercepted command still to be answered. Our replies
 * are written only when every earlier entry is done, so pipelined commands
 * keep their order. The queue's memory is capped: a client pipelining
 * commands while the upstream sits on an earlier one is not reading in step.
 * Pure.
 */

import type { Command, Token } from "./parser.ts";

/** One command waiting in the queue. */
export type QueueEntry =
  | { kind: "forwarded"; tag: string }
  | { kind: "local"; bytes: Uint8Array }
  | { kind: "deferred"; command: Command };

/**
 * Bytes an entry holds, roughly: payload plus what a small JS object costs.
 * The overhead also caps the entry count (4096 at the default 1 MiB), which
 * keeps the queue's O(n) operations (shift, findIndex) cheap.
 */
function entrySize(e: QueueEntry): number {
  const OVERHEAD = 256;
  switch (e.kind) {
    case "forwarded":
      return OVERHEAD + e.tag.length;
    case "local":
      return OVERHEAD + e.bytes.length;
    case "deferred":
      return OVERHEAD + e.command.tag.length + e.command.name.length + tokensSize(e.command.args);
  }
}

function tokensSize(tokens: readonly Token[]): number {
  let n = 0;
  for (const t of tokens) n += 16 + (t.type === "list" ? tokensSize(t.items) : t.value.length);
  return n;
}

/** Commands in client order, with the bytes they hold counted against a cap. */
export class ReplyQueue {
  #entries: QueueEntry[] = [];
  #bytes = 0;
  readonly #max: number;

  /** @param maxBytes most bytes held, as {@link entrySize} counts them */
  constructor(maxBytes: number) {
    this.#max = maxBytes;
  }

  /** Bytes held, as {@link entrySize} counts them. */
  get bytes(): number {
    return this.#bytes;
  }

  /** The oldest entry, if any. */
  head(): QueueEntry | undefined {
    return this.#entries[0];
  }

  /**
   * Adds entries at the tail (or head).
   * @returns false when the queue grew past its cap; it is then emptied and the session must end
   */
  add(entries: QueueEntry[], atHead = false): boolean {
    for (const e of entries) this.#bytes += entrySize(e);
    if (atHead) this.#entries.unshift(...entries);
    else this.#entries.push(...entries);
    if (this.#bytes <= this.#max) return true;
    this.#entries = [];
    this.#bytes = 0;
    return false;
  }

  /** Removes the oldest entry. */
  shift(): void {
    const e = this.#entries.shift();
    if (e) this.#bytes -= entrySize(e);
  }

  /** Removes the forwarded entry with this tag, if any (its reply arrived, or it was refused here). */
  removeForwarded(tag: string): void {
    const i = this.#entries.findIndex((e) => e.kind === "forwarded" && e.tag === tag);
    if (i < 0) return;
    const [e] = this.#entries.splice(i, 1);
    if (e) this.#bytes -= entrySize(e);
  }
}
