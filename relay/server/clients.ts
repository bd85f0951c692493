/**
 * @module
 * The registry: which connection receives datagrams for each key, who sent
 * to whom (for EndpointGone), and the duplicate-key rules (spec §4).
 *
 * - 1.x: a newcomer becomes active; the older connection stays open as
 *   inactive and is told so (Status 1 / Health text). When the active one
 *   leaves, the most recently demoted one is promoted (Status 0).
 * - 0.35: the newcomer replaces the old connection, which is closed. This
 *   rule also applies when either side of a duplicate is 0.35, since a 0.35
 *   client cannot be told it went inactive.
 * - When the last connection of key A leaves, every connected key A sent to
 *   gets EndpointGone(A) (PeerGone(A) for 0.35, the behaviour upstream
 *   intended and fixed in #4079).
 *
 * Port of `server/clients.rs @v1.0.3`.
 */

import type { Client } from "./client.ts";
import { RelayStatus } from "../proto/frame_type.ts";

/** All connections of one key. */
export interface KeyEntry {
  /** The key's {@link keyId}. */
  readonly id: string;
  /** Set when the last connection left, so cached references know the entry is dead. */
  gone: boolean;
  /** Set when the key connected to another instance of the mesh: leaving here is not "gone". */
  moved?: boolean;
  /** Receives datagrams for the key. */
  active: Client;
  /** Older connections with the same key, most recently demoted last. */
  inactive: Client[];
  /** Keys ({@link keyId} form) this key sent datagrams to. */
  sentTo: Set<string>;
}

/** Registry events the core counts or logs. */
export interface RegistryHooks {
  /** An older connection was demoted (1.x) or replaced (0.35). */
  onDuplicate(old: Client, by: Client, replaced: boolean): void;
  /** An inactive connection was promoted or removed. */
  onInactiveRemoved(): void;
  /** A key with no connection left. */
  onKeyGone(entry: KeyEntry, client: Client): void;
}

/** Key → connections map; see the module doc. */
export class Clients {
  readonly #entries = new Map<string, KeyEntry>();
  readonly #hooks: RegistryHooks;

  /** @param hooks callbacks for counting and logging */
  constructor(hooks: RegistryHooks) {
    this.#hooks = hooks;
  }

  /** Number of keys connected. */
  get size(): number {
    return this.#entries.size;
  }

  /** The entry for a key id, if connected. */
  get(id: string): KeyEntry | undefined {
    return this.#entries.get(id);
  }

  /** All entries (for metrics and shutdown). */
  entries(): IterableIterator<KeyEntry> {
    return this.#entries.values();
  }

  /**
   * Adds an authenticated connection.
   * @returns true if the key was not connected before
   */
  register(c: Client): boolean {
    const entry = this.#entries.get(c.id);
    c.state = "active";
    if (entry === undefined) {
      this.#entries.set(c.id, { id: c.id, gone: false, active: c, inactive: [], sentTo: new Set() });
      return true;
    }
    const old = entry.active;
    entry.active = c;
    if (old.gen.duplicateKey === "close-old" || c.gen.duplicateKey === "close-old") {
      this.#hooks.onDuplicate(old, c, true);
      old.close("replaced by a newer connection with the same key");
    } else {
      entry.inactive.push(old);
      old.demote(old.gen.status(RelayStatus.SameEndpointIdConnected));
      this.#hooks.onDuplicate(old, c, false);
    }
    return false;
  }

  /** Removes a closed connection; promotes an inactive one or ends the key. */
  unregister(c: Client): void {
    const entry = this.#entries.get(c.id);
    if (entry === undefined) return;
    if (entry.active !== c) {
      const i = entry.inactive.indexOf(c);
      if (i >= 0) {
        entry.inactive.splice(i, 1);
        this.#hooks.onInactiveRemoved();
      }
      return;
    }
    const next = entry.inactive.pop();
    if (next !== undefined) {
      entry.active = next;
      next.promote(next.gen.status(RelayStatus.Healthy));
      this.#hooks.onInactiveRemoved();
      return;
    }
    this.#entries.delete(c.id);
    entry.gone = true;
    this.#hooks.onKeyGone(entry, c);
  }
}
