/**
 * @module
 * Length checks shared by the two frame codecs (`codec_derp.ts`,
 * `codec_v1.ts`), so both report a bad frame with the same wording.
 */

/** @throws {SyntaxError} unless `payload` is exactly `len` bytes */
export function expectLen(name: string, payload: Uint8Array, len: number): void {
  if (payload.length !== len) {
    throw new SyntaxError(`Invalid ${name} frame: expected ${len} bytes, got ${payload.length}`);
  }
}

/** @throws {SyntaxError} unless `payload` is at least `len` bytes */
export function expectMin(name: string, payload: Uint8Array, len: number): void {
  if (payload.length < len) {
    throw new SyntaxError(`Invalid ${name} frame: expected at least ${len} bytes, got ${payload.length}`);
  }
}
