/**
 * @module
 * A minimal webxdc app (`.xdc`) for the end-to-end test: a ZIP archive with
 * `index.html` and `manifest.toml`, written by hand.
 *
 * Why by hand: Deno has no ZIP writer without JSR (unreachable here), and
 * `node:zlib` has DEFLATE but no ZIP container. A *stored* (method 0,
 * uncompressed) archive is a few headers and a CRC-32 per file
 * (APPNOTE.TXT 6.3, §4.3), which core's `async_zip` reads like any other.
 */

/** One file of the archive. */
export interface ZipEntry {
  /** Path inside the archive (ASCII). */
  name: string;
  /** Contents. */
  data: Uint8Array;
}

const CRC_TABLE = (() => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();

/** CRC-32 (IEEE 802.3, as ZIP uses it). */
export function crc32(data: Uint8Array): number {
  let c = 0xffffffff;
  for (const b of data) c = CRC_TABLE[(c ^ b) & 0xff]! ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

/**
 * Builds a stored ZIP archive (no compression, no ZIP64, DOS time 1980-01-01).
 * @throws {RangeError} a name is not ASCII or the archive would need ZIP64
 */
export function storedZip(entries: ZipEntry[]): Uint8Array {
  const enc = new TextEncoder();
  const locals: Uint8Array[] = [];
  const centrals: Uint8Array[] = [];
  let offset = 0;
  for (const e of entries) {
    if (!/^[\x20-\x7e]+$/.test(e.name)) throw new RangeError(`Zip entry names must be printable ASCII: ${e.name}`);
    const name = enc.encode(e.name);
    const crc = crc32(e.data);
    const local = new Uint8Array(30 + name.length + e.data.length);
    const lv = new DataView(local.buffer);
    lv.setUint32(0, 0x04034b50, true); // local file header signature
    lv.setUint16(4, 10, true); // version needed: 1.0
    lv.setUint16(6, 0, true); // flags
    lv.setUint16(8, 0, true); // method: stored
    lv.setUint16(10, 0, true); // mod time
    lv.setUint16(12, 0x21, true); // mod date: 1980-01-01
    lv.setUint32(14, crc, true);
    lv.setUint32(18, e.data.length, true); // compressed size
    lv.setUint32(22, e.data.length, true); // uncompressed size
    lv.setUint16(26, name.length, true);
    lv.setUint16(28, 0, true); // extra length
    local.set(name, 30);
    local.set(e.data, 30 + name.length);

    const central = new Uint8Array(46 + name.length);
    const cv = new DataView(central.buffer);
    cv.setUint32(0, 0x02014b50, true); // central directory header signature
    cv.setUint16(4, 20, true); // version made by
    cv.setUint16(6, 10, true); // version needed
    cv.setUint16(8, 0, true);
    cv.setUint16(10, 0, true);
    cv.setUint16(12, 0, true);
    cv.setUint16(14, 0x21, true);
    cv.setUint32(16, crc, true);
    cv.setUint32(20, e.data.length, true);
    cv.setUint32(24, e.data.length, true);
    cv.setUint16(28, name.length, true);
    // extra, comment, disk number, internal attributes: 0
    cv.setUint32(38, 0, true); // external attributes
    cv.setUint32(42, offset, true); // offset of the local header
    central.set(name, 46);

    locals.push(local);
    centrals.push(central);
    offset += local.length;
    if (offset > 0xffff_ffff) throw new RangeError("Archive too large for a ZIP without ZIP64");
  }
  const cdSize = centrals.reduce((n, c) => n + c.length, 0);
  const end = new Uint8Array(22);
  const ev = new DataView(end.buffer);
  ev.setUint32(0, 0x06054b50, true); // end of central directory signature
  ev.setUint16(8, entries.length, true); // entries on this disk
  ev.setUint16(10, entries.length, true); // entries in total
  ev.setUint32(12, cdSize, true);
  ev.setUint32(16, offset, true); // offset of the central directory
  const out = new Uint8Array(offset + cdSize + end.length);
  let at = 0;
  for (const part of [...locals, ...centrals, end]) {
    out.set(part, at);
    at += part.length;
  }
  return out;
}

/** A tiny webxdc app named `name` whose page just says so. */
export function makeXdc(name: string): Uint8Array {
  const enc = new TextEncoder();
  return storedZip([
    { name: "manifest.toml", data: enc.encode(`name = "${name.replace(/["\\]/g, "")}"\n`) },
    {
      name: "index.html",
      data: enc.encode(
        `<!doctype html><html><head><meta charset="utf-8"><title>${name}</title>` +
          `<script src="webxdc.js"></script></head><body><p>${name}</p></body></html>\n`,
      ),
    },
  ]);
}
