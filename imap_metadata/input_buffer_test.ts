import assert from "node:assert/strict";
import { InputBuffer, KEEP_BYTES } from "./input_buffer.ts";

const enc = new TextEncoder();
const dec = new TextDecoder();

Deno.test("InputBuffer is a FIFO whose views and takes hold the right bytes", () => {
  const b = new InputBuffer();
  b.push(enc.encode("hello "));
  b.push(enc.encode("world\nnext"));
  assert.equal(b.length, 16);
  assert.equal(b.indexOf(0x0a), 11);
  assert.equal(b.at(0), 0x68);
  b.consume(12);
  assert.equal(dec.decode(b.view()), "next");
  const taken = b.take();
  b.push(enc.encode("XXXX"));
  assert.equal(dec.decode(taken), "next", "take() returns a copy the buffer no longer writes to");
  assert.equal(b.length, 4);
});

Deno.test("InputBuffer copies linearly when a 60 KB line arrives one byte per read", () => {
  const b = new InputBuffer();
  const one = new Uint8Array([0x78]);
  const n = 60 * 1024;
  for (let i = 0; i < n; i++) b.push(one);
  assert.equal(b.length, n);
  // Each byte once, plus growth copies summing to less than the final size: under 3n (re-concatenating was n²/2).
  assert.ok(b.copied < 3 * n, `copied ${b.copied} bytes for ${n}`);
  assert.ok(b.capacity <= 2 * n);
});

Deno.test("InputBuffer stays bounded and linear under steady push/consume", () => {
  const b = new InputBuffer();
  const chunk = new Uint8Array(1000);
  let pushed = 0;
  for (let i = 0; i < 10_000; i++) {
    b.push(chunk);
    pushed += chunk.length;
    b.consume(b.length > 5000 ? 1000 : 0);
  }
  assert.ok(b.capacity <= 4 * 7000, `capacity ${b.capacity}`);
  assert.ok(b.copied < 3 * pushed, `copied ${b.copied} for ${pushed}`);
});

Deno.test("InputBuffer drops a large store once emptied", () => {
  const b = new InputBuffer();
  b.push(new Uint8Array(KEEP_BYTES * 4));
  b.consume(KEEP_BYTES * 4);
  assert.equal(b.capacity, 0);
  b.push(new Uint8Array(100));
  b.consume(100);
  assert.ok(b.capacity > 0, "a small store is kept for the next read");
});

Deno.test("InputBuffer.prepend() puts bytes back in front", () => {
  const b = new InputBuffer();
  b.push(enc.encode("tail"));
  b.prepend(enc.encode("head "));
  assert.equal(dec.decode(b.view()), "head tail");
  b.prepend(new Uint8Array(0));
  assert.equal(b.length, 9);
});
