/**
 * @module
 * "Address already in use (os error 98)" names neither listener nor
 * address. When starting fails that way (the services have closed what they
 * opened), each listener the config opens is bound once more, briefly, in
 * start order: the first that fails is the one in use, named with its
 * config key; in `--dev`, with how to pick another port.
 */

import { type Config, effectiveListeners, formatBindAddr } from "../config/mod.ts";

/**
 * A message naming the listener whose address is taken, or undefined when
 * `error` is not an address-in-use error (or no listener can be blamed).
 */
export function explainListenError(error: unknown, config: Config, dev: boolean): string | undefined {
  if (!(error instanceof Deno.errors.AddrInUse)) return undefined;
  for (const l of effectiveListeners(config)) {
    // UDP (STUN) reports its own address and key; a TCP probe says nothing about it.
    if (l.addr.port === 0 || l.scheme === "udp" || l.scheme === "dns") continue;
    try {
      Deno.listen({ hostname: l.addr.hostname, port: l.addr.port }).close();
    } catch (e) {
      if (!(e instanceof Deno.errors.AddrInUse)) continue;
      const addr = formatBindAddr(l.addr);
      const hint = dev && l.key === "http_bind_addr"
        ? "; another relay or `npm run dev` may be running. For another port: " +
          `printf 'http_bind_addr = "${formatBindAddr({ ...l.addr, port: l.addr.port + 1 })}"\\n' > dev.toml && ` +
          "npm run dev -- --config dev.toml"
        : `; stop the other program or change ${l.key}`;
      return `${l.name} listener ${addr} (${l.key}): address already in use${hint}`;
    }
  }
  return undefined;
}
