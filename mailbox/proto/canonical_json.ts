/**
 * @module
 * Matrix canonical JSON (spec appendices, "Canonical JSON"): a strict JSON
 * parser that keeps number literals as written, and an encoder that writes
 * the shortest UTF-8 form with object keys sorted by Unicode code point.
 *
 * Hand-written rather than `JSON.parse` + `JSON.stringify` because:
 * - a signature covers the sender's canonical bytes, and `JSON.parse` turns
 *   `12345678901234567890` or `1.50` into a different literal (room versions
 *   1-5 may carry such numbers, the spec says servers should cope);
 * - the input is hostile: depth and size are bounded here, duplicate keys
 *   (which two parsers may resolve differently) are refused, and a
 *   `__proto__` key is just a key (objects are `Map`s).
 *
 * Numbers: a plain integer literal is kept (`-0` becomes `0`); a literal with
 * a fraction or exponent whose value is an exact safe integer is written as
 * that integer (the spec's `1e10` → `10000000000`); any other literal is kept
 * as written, as gomatrixserverlib does.
 */

/** A JSON number, kept as its literal text. */
export class JsonNumber {
  /** The literal as it appeared (or as built). */
  readonly raw: string;
  /** @param raw a JSON number literal */
  constructor(raw: string) {
    this.raw = raw;
  }
  /** The value as a JS number (may lose precision). */
  get value(): number {
    return Number(this.raw);
  }
}

/** A parsed JSON value: objects are `Map`s (key order as read), numbers {@link JsonNumber}s. */
export type JsonValue = null | boolean | string | JsonNumber | JsonValue[] | JsonObject;

/** A parsed JSON object. */
export type JsonObject = Map<string, JsonValue>;

/** What {@link canonicalJson} accepts: parsed values, or plain JS objects/arrays/integers built in code. */
export type JsonInput =
  | null
  | boolean
  | string
  | number
  | JsonNumber
  | readonly JsonInput[]
  | Map<string, JsonInput>
  | { readonly [key: string]: JsonInput | undefined };

/** Deepest nesting {@link parseJson} accepts by default (objects and arrays). */
export const MAX_JSON_DEPTH = 64;

/** Malformed JSON: the message says what and where. */
export class JsonSyntaxError extends SyntaxError {
  /** @param message what is wrong, with the offset */
  constructor(message: string) {
    super(message);
    this.name = "JsonSyntaxError";
  }
}

const WS = new Set([0x20, 0x09, 0x0a, 0x0d]);
const NUMBER_RE = /-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?/y;
const ESCAPES: Record<string, string> = { '"': '"', "\\": "\\", "/": "/", b: "\b", f: "\f", n: "\n", r: "\r", t: "\t" };

/**
 * Parses one JSON text (RFC 8259) strictly: no trailing data, no duplicate
 * keys, at most `maxDepth` levels.
 * @throws {JsonSyntaxError}
 */
export function parseJson(text: string, maxDepth: number = MAX_JSON_DEPTH): JsonValue {
  let i = 0;
  const fail = (what: string): never => {
    throw new JsonSyntaxError(`${what} at offset ${i}`);
  };
  const skipWs = () => {
    while (i < text.length && WS.has(text.charCodeAt(i))) i++;
  };
  const parseString = (): string => {
    i++; // opening quote
    let out = "";
    let start = i;
    for (;;) {
      if (i >= text.length) fail("Unterminated string");
      const c = text.charCodeAt(i);
      if (c === 0x22) {
        out += text.slice(start, i);
        i++;
        return out;
      }
      if (c < 0x20) fail("Control character in string");
      if (c !== 0x5c) {
        i++;
        continue;
      }
      out += text.slice(start, i);
      const e = text[i + 1];
      if (e === "u") {
        const hex = text.slice(i + 2, i + 6);
        if (!/^[0-9a-fA-F]{4}$/.test(hex)) fail("Bad \\u escape");
        out += String.fromCharCode(parseInt(hex, 16));
        i += 6;
      } else if (e !== undefined && e in ESCAPES) {
        out += ESCAPES[e];
        i += 2;
      } else {
        fail("Bad escape");
      }
      start = i;
    }
  };
  const parseValue = (depth: number): JsonValue => {
    skipWs();
    const c = text[i];
    if (c === "{" || c === "[") {
      if (depth >= maxDepth) fail(`Nested deeper than ${maxDepth}`);
      i++;
      skipWs();
      if (c === "[") {
        const arr: JsonValue[] = [];
        if (text[i] === "]") {
          i++;
          return arr;
        }
        for (;;) {
          arr.push(parseValue(depth + 1));
          skipWs();
          if (text[i] === ",") i++;
          else if (text[i] === "]") {
            i++;
            return arr;
          } else fail("Expected , or ]");
        }
      }
      const obj: JsonObject = new Map();
      if (text[i] === "}") {
        i++;
        return obj;
      }
      for (;;) {
        skipWs();
        if (text[i] !== '"') fail("Expected a string key");
        const key = parseString();
        if (obj.has(key)) fail(`Duplicate key ${JSON.stringify(key)}`);
        skipWs();
        if (text[i] !== ":") fail("Expected :");
        i++;
        obj.set(key, parseValue(depth + 1));
        skipWs();
        if (text[i] === ",") i++;
        else if (text[i] === "}") {
          i++;
          return obj;
        } else fail("Expected , or }");
      }
    }
    if (c === '"') return parseString();
    if (text.startsWith("true", i)) {
      i += 4;
      return true;
    }
    if (text.startsWith("false", i)) {
      i += 5;
      return false;
    }
    if (text.startsWith("null", i)) {
      i += 4;
      return null;
    }
    NUMBER_RE.lastIndex = i;
    const m = NUMBER_RE.exec(text);
    if (m === null) return fail(i >= text.length ? "Unexpected end of input" : "Unexpected character");
    i += m[0].length;
    return new JsonNumber(m[0]);
  };
  const v = parseValue(0);
  skipWs();
  if (i !== text.length) fail("Trailing data");
  return v;
}

/** Compares two strings by Unicode code point (JS `<` compares UTF-16 units, which differs above U+FFFF). */
export function compareCodePoints(a: string, b: string): number {
  const n = Math.min(a.length, b.length);
  for (let k = 0; k < n; k++) {
    const x = a.codePointAt(k)!;
    const y = b.codePointAt(k)!;
    if (x !== y) return x - y;
    if (x > 0xffff) k++;
  }
  return a.length - b.length;
}

function canonicalNumber(raw: string): string {
  if (/^-?(?:0|[1-9][0-9]*)$/.test(raw)) return raw === "-0" ? "0" : raw;
  const v = Number(raw);
  if (Number.isSafeInteger(v)) return String(v === 0 ? 0 : v);
  return raw;
}

/**
 * The canonical JSON text of `value` (encode as UTF-8 to sign it).
 * Plain JS numbers must be safe integers; `undefined` members are left out.
 * @throws {RangeError} a JS number that is not a safe integer
 * @example
 * ```ts
 * import { canonicalJson } from "./canonical_json.ts";
 * if (canonicalJson({ b: "2", a: "1" }) !== '{"a":"1","b":"2"}') throw new Error("not canonical");
 * ```
 */
export function canonicalJson(value: JsonInput): string {
  if (value === null) return "null";
  switch (typeof value) {
    case "boolean":
      return value ? "true" : "false";
    case "string":
      // JSON.stringify writes exactly the spec grammar: \" \\ \b \f \n \r \t, other controls as \u00xx.
      return JSON.stringify(value);
    case "number":
      if (!Number.isSafeInteger(value)) throw new RangeError(`Not a canonical JSON number: ${value}`);
      return String(value === 0 ? 0 : value);
  }
  if (value instanceof JsonNumber) return canonicalNumber(value.raw);
  if (Array.isArray(value)) return `[${value.map((v: JsonInput) => canonicalJson(v)).join(",")}]`;
  const entries: [string, JsonInput][] = value instanceof Map
    ? [...value.entries()]
    : Object.entries(value as Record<string, JsonInput | undefined>).filter((e): e is [string, JsonInput] =>
      e[1] !== undefined
    );
  entries.sort((x, y) => compareCodePoints(x[0], y[0]));
  return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v)}`).join(",")}}`;
}
