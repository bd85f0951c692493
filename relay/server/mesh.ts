/**
 * @module
 * The instance mesh: several relay instances with no shared memory serving
 * one relay URL (edge platforms, or self-hosted instances behind one load
 * balancer), so two clients of one URL may land on different instances.
 *
 * The core talks to the mesh through {@link InstanceMesh}:
 * - `claim(key)` when a key's first local connection registers, `release`
 *   when its last one leaves; the backend remembers which instance holds it;
 * - `forward(...)` for a datagram whose destination is not connected here;
 *   the backend delivers it to the holding instance (or drops it);
 * - `gone(dst, key)` so EndpointGone reaches senders on other instances.
 *
 * Incoming traffic arrives through a {@link MeshSink} the core provides.
 * A `claimed` notice tells an instance that a key it holds connected
 * elsewhere (the newer connection wins, as with duplicates on one instance).
 *
 * Backends: {@link InProcessMeshHub} here (tests, and one process with
 * several cores); Redis and Deno KV in their own files.
 */

/**
 * What an instance receives from the others. Byte arguments may be views
 * into a backend's receive buffer, valid only during the call: a sink that
 * keeps one must copy it (the core copies datagram contents into the
 * receiver's queue at once).
 */
export interface MeshSink {
  /** A datagram for `dst`, which the sender believed to be connected here. */
  datagram(dst: Uint8Array, src: Uint8Array, ecn: number, segmentSize: number, contents: Uint8Array): void;
  /** `gone` left; `dst` had sent to it and should get EndpointGone/PeerGone. */
  gone(dst: Uint8Array, gone: Uint8Array): void;
  /** `key` connected on another instance, which now holds it. */
  claimed(key: Uint8Array): void;
}

/** An instance's link to the others; see the module doc. */
export interface InstanceMesh {
  /** Name of the backend, for logs and metrics. */
  readonly kind: string;
  /** Starts delivering to `sink`. Resolves once the link is usable. */
  start(sink: MeshSink): Promise<void>;
  /** The first local connection of `key` registered. */
  claim(key: Uint8Array): void;
  /** The last local connection of `key` left. */
  release(key: Uint8Array): void;
  /** Sends a datagram towards the instance holding `dst` (fire and forget; may drop). */
  forward(dst: Uint8Array, src: Uint8Array, ecn: number, segmentSize: number, contents: Uint8Array): void;
  /** Tells the instance holding `dst` that `gone` left. */
  gone(dst: Uint8Array, gone: Uint8Array): void;
  /** Stops the link. */
  close(): Promise<void>;
}

function hexOf(key: Uint8Array): string {
  let s = "";
  for (const b of key) s += b.toString(16).padStart(2, "0");
  return s;
}

/**
 * A mesh whose instances live in one process: messages are delivered on a
 * microtask, copied, as a network backend would deliver them. For tests of
 * the core's mesh logic and as the reference the other backends follow.
 */
export class InProcessMeshHub {
  readonly #owner = new Map<string, InProcessMesh>();
  readonly #links = new Set<InProcessMesh>();

  /** A new instance's link. */
  link(): InstanceMesh {
    const l = new InProcessMesh(this);
    this.#links.add(l);
    return l;
  }

  /** @internal */
  claim(l: InProcessMesh, key: Uint8Array): void {
    const id = hexOf(key);
    const prev = this.#owner.get(id);
    this.#owner.set(id, l);
    if (prev !== undefined && prev !== l) prev.deliver((s) => s.claimed(key.slice()));
  }

  /** @internal */
  release(l: InProcessMesh, key: Uint8Array): void {
    const id = hexOf(key);
    if (this.#owner.get(id) === l) this.#owner.delete(id);
  }

  /** @internal */
  holder(key: Uint8Array): InProcessMesh | undefined {
    return this.#owner.get(hexOf(key));
  }

  /** @internal */
  drop(l: InProcessMesh): void {
    this.#links.delete(l);
    for (const [id, owner] of this.#owner) if (owner === l) this.#owner.delete(id);
  }
}

class InProcessMesh implements InstanceMesh {
  readonly kind = "in-process";
  readonly #hub: InProcessMeshHub;
  #sink: MeshSink | null = null;

  constructor(hub: InProcessMeshHub) {
    this.#hub = hub;
  }

  start(sink: MeshSink): Promise<void> {
    this.#sink = sink;
    return Promise.resolve();
  }

  deliver(fn: (s: MeshSink) => void): void {
    queueMicrotask(() => {
      if (this.#sink !== null) fn(this.#sink);
    });
  }

  claim(key: Uint8Array): void {
    this.#hub.claim(this, key);
  }

  release(key: Uint8Array): void {
    this.#hub.release(this, key);
  }

  forward(dst: Uint8Array, src: Uint8Array, ecn: number, segmentSize: number, contents: Uint8Array): void {
    const to = this.#hub.holder(dst);
    if (to === undefined || to === this) return;
    const [d, s, c] = [dst.slice(), src.slice(), contents.slice()];
    to.deliver((sink) => sink.datagram(d, s, ecn, segmentSize, c));
  }

  gone(dst: Uint8Array, gone: Uint8Array): void {
    const to = this.#hub.holder(dst);
    if (to === undefined || to === this) return;
    const [d, g] = [dst.slice(), gone.slice()];
    to.deliver((sink) => sink.gone(d, g));
  }

  close(): Promise<void> {
    this.#sink = null;
    this.#hub.drop(this);
    return Promise.resolve();
  }
}
