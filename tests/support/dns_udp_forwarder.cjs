/**
 * @module
 * Inside a test network namespace (`netns.ts`), answers DNS over UDP on
 * `127.0.0.1:<udpPort>` by asking over TCP at `127.0.0.1:<tcpPort>`, which
 * the namespace bridge forwards to our DNS server in the root namespace
 * (the bridge carries only TCP). iroh's resolver always asks port 53 and
 * starts with UDP, so this stands in for "our DNS server on port 53".
 *
 * Usage: `node dns_udp_forwarder.cjs <udpPort> <tcpPort>`; prints `ready`,
 * exits when stdin ends. One TCP connection per query, 3 s bound each.
 */
"use strict";

const dgram = require("node:dgram");
const net = require("node:net");

const [udpPort, tcpPort] = process.argv.slice(2).map(Number);
const sock = dgram.createSocket("udp4");

sock.on("message", (msg, rinfo) => {
  const conn = net.createConnection({ host: "127.0.0.1", port: tcpPort });
  const timer = setTimeout(() => conn.destroy(), 3000);
  let buf = Buffer.alloc(0);
  conn.on("connect", () => {
    const len = Buffer.alloc(2);
    len.writeUInt16BE(msg.length);
    conn.write(Buffer.concat([len, msg]));
  });
  conn.on("data", (d) => {
    buf = Buffer.concat([buf, d]);
    if (buf.length >= 2 && buf.length >= 2 + buf.readUInt16BE(0)) {
      sock.send(buf.subarray(2, 2 + buf.readUInt16BE(0)), rinfo.port, rinfo.address);
      clearTimeout(timer);
      conn.destroy();
    }
  });
  conn.on("error", () => clearTimeout(timer));
});

sock.bind(udpPort, "127.0.0.1", () => process.stdout.write("ready\n"));
process.stdin.on("data", () => {});
process.stdin.on("end", () => process.exit(0));
process.stdin.on("error", () => process.exit(0));
