/**
 * `npm run dev` as an operator or a process supervisor stops it: SIGTERM to
 * the npm process must stop the server too (the scripts `exec` into
 * `deno task`, which passes signals on; before, the shell between them
 * died and left the server running). Skipped, saying so, without npm.
 */

import assert from "node:assert/strict";
import { withTimeout } from "./support/relay_scope.ts";

const ROOT = new URL("../", import.meta.url).pathname;
const hasNpm = await new Deno.Command("npm", { args: ["--version"], stdout: "null", stderr: "null" }).output()
  .then((o) => o.success, () => false);
if (!hasNpm) console.log("npm_dev_test: SKIPPED — no npm on PATH");

/** Process ids below `pid` (Linux /proc), so a failed test leaves no server behind. */
function descendants(pid: number): number[] {
  const parent = new Map<number, number>();
  for (const e of Deno.readDirSync("/proc")) {
    if (!/^\d+$/.test(e.name)) continue;
    try {
      const stat = Deno.readTextFileSync(`/proc/${e.name}/stat`);
      parent.set(Number(e.name), Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]));
    } catch {
      // exited meanwhile
    }
  }
  const out: number[] = [];
  for (let frontier = [pid]; frontier.length > 0;) {
    const next = [...parent].filter(([, pp]) => frontier.includes(pp)).map(([p]) => p);
    out.push(...next);
    frontier = next;
  }
  return out;
}

Deno.test({
  name: "SIGTERM to the npm process of `npm run dev` stops the server",
  ignore: !hasNpm,
  async fn() {
    const dir = await Deno.makeTempDir();
    await Deno.writeTextFile(`${dir}/dev.toml`, 'http_bind_addr = "127.0.0.1:0"\nenable_stun = false\n');
    const npm = new Deno.Command("npm", {
      args: ["run", "--silent", "dev", "--", "--config", `${dir}/dev.toml`],
      cwd: ROOT,
      stdin: "null",
      stdout: "null",
      stderr: "piped",
      env: { NO_COLOR: "1" },
    }).spawn();
    const reader = npm.stderr.pipeThrough(new TextDecoderStream()).getReader();
    let text = "";
    let below: number[] = [];
    const readUntil = (re: RegExp | null) =>
      (async () => {
        for (;;) {
          if (re?.test(text)) return;
          const { value, done } = await reader.read();
          if (done) {
            if (re) throw new Error(`npm run dev ended early: ${text}`);
            return;
          }
          text += value;
        }
      })();
    try {
      await withTimeout(readUntil(/relay URL for clients: http:\/\/127\.0\.0\.1:\d+\//), 30_000, "the server to start");
      below = descendants(npm.pid);
      const port = Number(/relay listening on http:\/\/127\.0\.0\.1:(\d+)/.exec(text)![1]);
      npm.kill("SIGTERM");
      // The server holds the other end of this pipe: it ends only when every process has exited.
      await withTimeout(readUntil(null), 15_000, "every process of npm run dev to exit");
      assert.match(text, /SIGTERM: shutting down/);
      assert.match(text, /stopped/);
      await assert.rejects(Deno.connect({ hostname: "127.0.0.1", port }), "the relay port is closed");
    } finally {
      try {
        npm.kill("SIGKILL");
      } catch {
        // already gone
      }
      await npm.status;
      for (const pid of below) {
        try {
          Deno.kill(pid, "SIGKILL");
        } catch {
          // exited, as it should have
        }
      }
      await reader.cancel().catch(() => {});
      await Deno.remove(dir, { recursive: true });
    }
  },
});
