import assert from "node:assert/strict";
import { createLogger, RateLimitedLog, suppressedLogLines } from "./mod.ts";

function setup(opts: { burst?: number; perSecond?: number; level?: "debug" | "info" } = {}) {
  const lines: string[] = [];
  let t = 0;
  const log = createLogger({ level: opts.level ?? "info", write: (l) => lines.push(l) });
  const limited = new RateLimitedLog(log, {
    burst: opts.burst ?? 3,
    perSecond: opts.perSecond ?? 1,
    summaryMs: 60_000,
    now: () => t,
  });
  return { lines, limited, advance: (ms: number) => t += ms };
}

Deno.test("RateLimitedLog: a burst goes out, the rest of a flood is counted and summarised once", () => {
  const { lines, limited } = setup();
  const before = suppressedLogLines();
  for (let i = 0; i < 10_000; i++) limited.info("dup", `conn ${i}: replaced`);
  assert.equal(lines.length, 3);
  assert.equal(limited.suppressed, 9_997);
  assert.equal(suppressedLogLines() - before, 9_997);
  limited.close();
  assert.equal(lines.length, 4);
  assert.match(lines[3]!, /INFO .*9997 similar lines suppressed in the last 1 s \(first: conn 3: replaced\)/);
  // Nothing more to summarise: close() again writes nothing.
  limited.close();
  assert.equal(lines.length, 4);
});

Deno.test("RateLimitedLog: keys have separate budgets that refill over time", () => {
  const { lines, limited, advance } = setup({ burst: 2, perSecond: 1 });
  for (let i = 0; i < 5; i++) limited.warn("a", "a");
  for (let i = 0; i < 5; i++) limited.warn("b", "b");
  assert.deepEqual(lines.map((l) => l.slice(-1)), ["a", "a", "b", "b"]);
  advance(1000);
  limited.warn("a", "a");
  limited.warn("a", "a");
  assert.equal(lines.length, 5, "one token back after a second");
  limited.close();
  assert.equal(lines.length, 7, "one summary per key");
});

Deno.test("RateLimitedLog: a lazy message is not built for dropped lines (except the first kept for the summary)", () => {
  const { limited } = setup({ burst: 1 });
  let built = 0;
  for (let i = 0; i < 100; i++) limited.info("k", () => `line ${++built}`);
  assert.equal(built, 2);
  limited.close();
});

Deno.test("RateLimitedLog: debug lines with debug off are neither written nor counted", () => {
  const { lines, limited } = setup({ burst: 1 });
  for (let i = 0; i < 10; i++) limited.line("debug", "k", "x");
  assert.equal(lines.length, 0);
  assert.equal(limited.suppressed, 0);
  limited.close();
});

Deno.test("RateLimitedLog: the summary timer writes by itself after the period", async () => {
  const lines: string[] = [];
  const summary = Promise.withResolvers<void>();
  const write = (l: string) => {
    if (lines.push(l) === 2) summary.resolve();
  };
  const limited = new RateLimitedLog(createLogger({ write }), { burst: 1, summaryMs: 50 });
  limited.info("k", "one");
  limited.info("k", "two");
  limited.info("k", "three");
  assert.equal(lines.length, 1);
  // The limiter's timer is unref'd (it must not keep a service alive): keep the loop alive here.
  const keepAlive = setTimeout(() => {}, 10_000);
  await summary.promise;
  clearTimeout(keepAlive);
  assert.match(lines[1]!, /2 similar lines suppressed .*first: two/);
  limited.close();
});
