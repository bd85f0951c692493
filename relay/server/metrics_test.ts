import assert from "node:assert/strict";
import { disconnectReason, RelayMetrics } from "./metrics.ts";

Deno.test("disconnectReason() maps the close reasons clients use to a fixed label set", () => {
  const cases: [string, string][] = [
    ["control queue full: pings arrive faster than the peer reads the pongs", "control_queue_full"],
    ["protocol error: Frame of 2000000 bytes exceeds the 1048576-byte limit", "frame_too_large"],
    ["websocket protocol error: Message exceeds 1048576 bytes", "frame_too_large"],
    ["write timeout", "write_timeout"],
    ["write failed: Broken pipe", "write_failed"],
    ["websocket protocol error: Client frame is not masked", "protocol_error"],
    ["datagram for an invalid key", "protocol_error"],
    ["handshake: bad signature", "handshake_failed"],
    ["establish timeout", "establish_timeout"],
    ["ping timeout: no pong", "ping_timeout"],
    ["access denied", "access_denied"],
    ["access revoked by configuration reload", "access_denied"],
    ["replaced by a newer connection with the same key", "replaced"],
    ["the key connected to another relay instance", "replaced"],
    ["connection closed by peer", "peer_closed"],
    ["websocket closed by peer (code 1000)", "peer_closed"],
    ["connection lost", "connection_lost"],
    ["relay shutting down", "shutdown"],
    ["something new", "other"],
  ];
  for (const [reason, label] of cases) assert.equal(disconnectReason(reason), label, reason);
});

Deno.test("RelayMetrics renders disconnects by reason with every label present", () => {
  const m = new RelayMetrics();
  m.countDisconnect("control queue full: x");
  m.countDisconnect("control queue full: y");
  const text = m.render();
  assert.match(text, /^relayserver_disconnects_by_reason_total\{reason="control_queue_full"\} 2$/m);
  assert.match(text, /^relayserver_disconnects_by_reason_total\{reason="other"\} 0$/m);
  assert.match(text, /^# TYPE relayserver_disconnects_by_reason counter$/m);
});
