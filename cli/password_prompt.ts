/**
 * @module
 * Reading a password for `hash-password`: on a terminal, a prompt on stderr
 * and no echo (raw mode), Enter finishes, asked twice; otherwise all of
 * stdin, so scripts can pipe it in (`printf %s "$PW" | … hash-password`).
 */

/** Why no password was read; main.ts prints it and exits 2. */
export class PasswordAborted extends Error {
  /** @param message what happened */
  constructor(message: string) {
    super(message);
    this.name = "PasswordAborted";
  }
}

const CTRL_C = 0x03, CTRL_D = 0x04, CTRL_U = 0x15, BACKSPACE = 0x08, DEL = 0x7f, CR = 0x0d, LF = 0x0a;

/** Reads one line from a raw-mode terminal without echoing it. */
async function readHidden(prompt: string): Promise<string> {
  const enc = new TextEncoder();
  // Raw before the prompt: a key typed the moment the prompt shows must not be echoed.
  Deno.stdin.setRaw(true);
  await Deno.stderr.write(enc.encode(prompt));
  const bytes: number[] = [];
  const buf = new Uint8Array(256);
  try {
    for (;;) {
      const n = await Deno.stdin.read(buf);
      if (n === null) throw new PasswordAborted("hash-password: end of input before Enter");
      for (const b of buf.subarray(0, n)) {
        if (b === CR || b === LF) return new TextDecoder().decode(new Uint8Array(bytes));
        if (b === CTRL_C) throw new PasswordAborted("hash-password: interrupted");
        if (b === CTRL_D && bytes.length === 0) throw new PasswordAborted("hash-password: no password entered");
        if (b === BACKSPACE || b === DEL) bytes.pop();
        else if (b === CTRL_U) bytes.length = 0;
        else if (b >= 0x20 || b === 0x09) bytes.push(b);
        // Bound what a stuck key can pile up: no password is this long.
        if (bytes.length > 4096) throw new PasswordAborted("hash-password: password longer than 4096 bytes");
      }
    }
  } finally {
    Deno.stdin.setRaw(false);
    await Deno.stderr.write(enc.encode("\n"));
  }
}

async function readAll(): Promise<string> {
  const chunks: Uint8Array[] = [];
  let total = 0;
  for await (const c of Deno.stdin.readable) {
    chunks.push(c);
    total += c.length;
    if (total > 65536) throw new PasswordAborted("hash-password: more than 64 KiB on stdin");
  }
  const all = new Uint8Array(total);
  let at = 0;
  for (const c of chunks) {
    all.set(c, at);
    at += c.length;
  }
  return new TextDecoder().decode(all).replace(/\r?\n$/, "");
}

/**
 * The password to hash: prompted for (twice, without echo) when stdin is a
 * terminal, else read from stdin (one trailing newline dropped).
 * @throws {PasswordAborted} empty, interrupted, or the two entries differ
 */
export async function readPassword(): Promise<string> {
  if (!Deno.stdin.isTerminal()) {
    const pw = await readAll();
    if (pw === "") throw new PasswordAborted("hash-password: empty password on stdin");
    return pw;
  }
  const pw = await readHidden("Password for [imap.users] (not shown): ");
  if (pw === "") throw new PasswordAborted("hash-password: empty password");
  const again = await readHidden("Same password again: ");
  if (again !== pw) throw new PasswordAborted("hash-password: the two passwords differ, nothing written");
  return pw;
}
