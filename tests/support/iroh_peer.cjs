/**
 * @module
 * A real iroh 1.x endpoint (npm `@number0/iroh`, the Node-API binding of the
 * Rust `iroh` crate) driven over a JSON-lines protocol, for interop tests of
 * our relay. Run it with `node` (the package's `main` field is wrong, so it is
 * loaded by file path) inside the network namespace of `netns.ts`.
 *
 * Usage: `node iroh_peer.cjs '<json config>'`, config fields:
 * - `mode`: `"accept-echo"` (accept connections, echo one bidirectional
 *   stream each) or `"connect-send"` (dial `peerId`, send `bytes` random bytes
 *   on one bidirectional stream, read the echo back and compare);
 * - `relayUrl`: the only relay in the endpoint's relay map;
 * - `preset` (optional): `"n0"` builds the endpoint with iroh's production
 *   preset (n0's relays, pkarr publishing and DNS address lookup) instead of
 *   the minimal one with `relayUrl`; it then does not wait to go online (n0's
 *   relays are out of reach in a test namespace);
 * - `byIdOnly` (optional, connect-send): dial `peerId` with no relay URL and
 *   no addresses, so iroh must find the peer through address lookup;
 * - `alpn`: application protocol string; `peerId` and `bytes` for connect-send;
 * - `secretKeyHex` (optional, 64 hex chars), `logLevel` (optional, e.g.
 *   `"Debug"`: iroh's tracing output then goes to stderr);
 * - `onlineTimeoutMs`, `opTimeoutMs` (optional): bounds on going online and on
 *   each network step, so a broken relay fails the test instead of hanging it.
 *
 * Every report is one JSON object per stdout line with an `event` field:
 * `bound` (`id`), `online` (`elapsedMs`), `connected` (`remoteId`,
 * `elapsedMs`), `echoed` (accept side: `bytes`, `paths`, `stats`), `done`
 * (connect side: `bytes` echoed back, `intact`, `elapsedMs` from opening the
 * stream to the end of the echo, `paths`, `stats`),
 * `closed`, `error` (`message`), `exit`.
 *
 * Commands on stdin, one per line: `close` closes every connection and the
 * endpoint, then exits 0. End of stdin does the same, so the process never
 * outlives its parent.
 *
 * The dialer gets an `EndpointAddr` with only the relay URL and no direct
 * addresses; the namespace gives each peer its own loopback, so hole punching
 * has nothing to reach and every packet must cross the relay.
 */
"use strict";

const path = require("node:path");
const crypto = require("node:crypto");
const iroh = require(path.join(__dirname, "..", "..", "node_modules", "@number0", "iroh", "index.js"));
const { Endpoint, EndpointAddr, EndpointId, RelayMap, RelayMode, presetMinimal, presetN0, setLogLevel } = iroh;

/**
 * Stream chunk size, bytes. The binding passes data as JS arrays of numbers
 * (it rejects Buffers), copied element by element, which caps throughput at
 * a few MiB/s; chunks keep those arrays small.
 */
const CHUNK_BYTES = 64 * 1024;

const cfg = JSON.parse(process.argv[2] ?? "{}");
const onlineTimeoutMs = cfg.onlineTimeoutMs ?? 20_000;
const opTimeoutMs = cfg.opTimeoutMs ?? 30_000;
const started = performance.now();
/** @type {import("../../node_modules/@number0/iroh/index.d.ts").Connection[]} */
const conns = [];
let endpoint;

/** Writes one report line. */
function emit(event, fields = {}) {
  process.stdout.write(JSON.stringify({ event, ...fields }) + "\n");
}

/** Rejects with `what` if `p` does not settle within `ms`. */
function within(ms, what, p) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`Timed out after ${ms} ms: ${what}`)), ms);
  });
  return Promise.race([p, timeout]).finally(() => clearTimeout(timer));
}

/** Paths and headline stats of a connection, as plain JSON. */
function describe(conn) {
  return {
    paths: conn.paths().map((p) => ({
      id: p.id,
      isSelected: p.isSelected,
      isRelay: p.isRelay,
      isIp: p.isIp,
      remoteAddr: p.remoteAddr,
      rttMs: p.rttMs,
      stats: p.stats,
    })),
    stats: conn.stats(),
  };
}

async function bind() {
  if (cfg.logLevel) setLogLevel(cfg.logLevel);
  const b = Endpoint.builder();
  if (cfg.preset === "n0") {
    presetN0(b);
  } else {
    presetMinimal(b);
    const map = RelayMap.empty();
    map.insert({ url: cfg.relayUrl });
    b.relayMode(RelayMode.custom(map));
  }
  b.alpns([Array.from(Buffer.from(cfg.alpn))]);
  b.bindAddr("127.0.0.1:0");
  if (cfg.secretKeyHex) b.secretKey(Array.from(Buffer.from(cfg.secretKeyHex, "hex")));
  endpoint = await b.bind();
  emit("bound", { id: endpoint.id().toString() });
  if (cfg.preset === "n0") return endpoint;
  await within(onlineTimeoutMs, "endpoint online (home relay)", endpoint.online());
  emit("online", { elapsedMs: performance.now() - started });
  return endpoint;
}

/** `bytes` as the plain number array the binding wants; a loop is several times faster than `Array.from`. */
function toArray(bytes) {
  const out = new Array(bytes.length);
  for (let i = 0; i < bytes.length; i++) out[i] = bytes[i];
  return out;
}

async function echoOne(incoming) {
  const conn = await within(opTimeoutMs, "accept handshake", (await incoming.accept()).connect());
  conns.push(conn);
  emit("connected", { remoteId: conn.remoteId().toString(), elapsedMs: performance.now() - started });
  const bi = await within(opTimeoutMs, "acceptBi", conn.acceptBi());
  // Echo as it arrives: both directions overlap and nothing big is held in memory.
  const echo = async () => {
    let bytes = 0;
    for (let chunk = await bi.recv.read(CHUNK_BYTES); chunk.length > 0; chunk = await bi.recv.read(CHUNK_BYTES)) {
      await bi.send.writeAll(chunk);
      bytes += chunk.length;
    }
    await bi.send.finish();
    return bytes;
  };
  const bytes = await within(opTimeoutMs, "echo stream", echo());
  emit("echoed", { bytes, ...describe(conn) });
  const reason = await conn.closed();
  emit("closed", { reason });
}

async function acceptEcho(ep) {
  for (let incoming = await ep.acceptNext(); incoming; incoming = await ep.acceptNext()) {
    echoOne(incoming).catch((e) => emit("error", { message: String(e && e.message ? e.message : e) }));
  }
}

async function connectSend(ep) {
  const t0 = performance.now();
  const id = EndpointId.fromString(cfg.peerId);
  const addr = cfg.byIdOnly ? new EndpointAddr(id) : new EndpointAddr(id, cfg.relayUrl, []);
  const conn = await within(opTimeoutMs, "connect", ep.connect(addr, Array.from(Buffer.from(cfg.alpn))));
  conns.push(conn);
  emit("connected", { remoteId: conn.remoteId().toString(), elapsedMs: performance.now() - t0 });
  const payload = crypto.randomBytes(cfg.bytes);
  const t1 = performance.now();
  const bi = await conn.openBi();
  const writing = (async () => {
    for (let off = 0; off < payload.length; off += CHUNK_BYTES) {
      await bi.send.writeAll(toArray(payload.subarray(off, off + CHUNK_BYTES)));
    }
    await bi.send.finish();
  })();
  // Compare the echo with the payload as it arrives, byte by byte.
  const reading = (async () => {
    let bytes = 0;
    let intact = true;
    for (let chunk = await bi.recv.read(CHUNK_BYTES); chunk.length > 0; chunk = await bi.recv.read(CHUNK_BYTES)) {
      for (let i = 0; i < chunk.length && intact; i++) intact = chunk[i] === payload[bytes + i];
      bytes += chunk.length;
    }
    return { bytes, intact: intact && bytes === payload.length };
  })();
  const [, echo] = await within(opTimeoutMs, "send and read echo", Promise.all([writing, reading]));
  const elapsedMs = performance.now() - t1;
  emit("done", {
    bytes: echo.bytes,
    intact: echo.intact,
    elapsedMs,
    ...describe(conn),
  });
}

let closing = false;
async function shutdown(code) {
  if (closing) return;
  closing = true;
  for (const c of conns) {
    try {
      c.close(0n, Array.from(Buffer.from("bye")));
    } catch {
      // already closed
    }
  }
  try {
    if (endpoint) await within(5_000, "endpoint close", endpoint.close());
  } catch (e) {
    process.stderr.write(`iroh_peer: ${e.message}\n`);
  }
  emit("exit", { code });
  process.exit(code);
}

function listenStdin() {
  let buf = "";
  process.stdin.setEncoding("utf8");
  process.stdin.on("data", (chunk) => {
    buf += chunk;
    for (let nl = buf.indexOf("\n"); nl >= 0; nl = buf.indexOf("\n")) {
      const line = buf.slice(0, nl).trim();
      buf = buf.slice(nl + 1);
      if (line === "close") shutdown(0);
      else if (line) emit("error", { message: `Unknown command: ${line}` });
    }
  });
  process.stdin.on("end", () => shutdown(0));
  process.stdin.on("error", () => shutdown(0));
}

async function main() {
  listenStdin();
  const ep = await bind();
  if (cfg.mode === "accept-echo") await acceptEcho(ep);
  else if (cfg.mode === "connect-send") await connectSend(ep);
  else throw new Error(`Unknown mode: ${cfg.mode}`);
}

main().catch((e) => {
  emit("error", { message: String(e && e.message ? e.message : e) });
  shutdown(1);
});
