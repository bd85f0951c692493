/**
 * @module
 * `deno task compile`: one self-contained executable (relay + IMAP listener)
 * at `dist/iroh-relay-deno`, with the git revision embedded for `--version`.
 *
 * `deno compile` needs its runtime stub, denort, matching this Deno version.
 * It downloads it from dl.deno.land unless `DENORT_BIN` points at a local
 * copy; without network and without `DENORT_BIN` this task stops with a
 * message saying exactly that. The full `deno` executable is not a denort:
 * a binary built on it runs as the Deno CLI instead of this program.
 *
 * The revision goes in through `dist/build-info.json`, embedded with
 * `--include` and removed again once the build ends: the source tree keeps
 * no build artefact, and a source run never reads one (`main.ts` looks at
 * it only when `Deno.build.standalone`).
 *
 * Usage: `npx deno task compile [--target x86_64-unknown-linux-gnu] [--output PATH]`
 */

const root = new URL("../", import.meta.url).pathname;

function arg(name: string): string | undefined {
  const i = Deno.args.indexOf(name);
  return i >= 0 ? Deno.args[i + 1] : undefined;
}

async function gitRevision(): Promise<string> {
  try {
    const out = await new Deno.Command("git", { args: ["rev-parse", "--short=12", "HEAD"], cwd: root, stderr: "null" })
      .output();
    if (!out.success) return "unknown";
    const rev = new TextDecoder().decode(out.stdout).trim();
    const dirty = await new Deno.Command("git", { args: ["status", "--porcelain", "--untracked-files=no"], cwd: root })
      .output();
    return new TextDecoder().decode(dirty.stdout).trim() ? `${rev}-dirty` : rev;
  } catch {
    return "unknown";
  }
}

if (import.meta.main) {
  const output = arg("--output") ?? `${root}dist/iroh-relay-deno`;
  const target = arg("--target");
  const distExisted = await Deno.stat(`${root}dist`).then(() => true, () => false);
  await Deno.mkdir(`${root}dist`, { recursive: true });
  const git = await gitRevision();
  const buildInfo = `${root}dist/build-info.json`;
  await Deno.writeTextFile(buildInfo, JSON.stringify({ git, built: new Date().toISOString() }) + "\n");
  const args = [
    "compile",
    // The permissions the service needs, baked in: network, reading its config and
    // certificates, writing ACME certificates to cert_dir and the mailbox's and discovery's
    // data directories, environment (IROH_RELAY_* overrides), and the host name. deno.json's
    // "unstable": ["net"] (STUN's and DNS's UDP sockets) is read by `deno compile` and baked in as well.
    "--allow-net",
    "--allow-read",
    "--allow-write",
    // Also in deno.json's "unstable"; named here too so the binary has it whatever compile reads from there.
    "--unstable-net",
    "--allow-env",
    "--allow-ffi",
    "--allow-sys=hostname",
    "--include",
    `${root}dist/build-info.json`,
    "--output",
    output,
    ...(target ? ["--target", target] : []),
    `${root}main.ts`,
  ];
  console.error(`compile: git ${git}${Deno.env.get("DENORT_BIN") ? `, DENORT_BIN=${Deno.env.get("DENORT_BIN")}` : ""}`);
  const out = await new Deno.Command(Deno.execPath(), { args, cwd: root, stdout: "inherit", stderr: "piped" }).output();
  await Deno.remove(buildInfo);
  // dist/ only held the build info (the binary went elsewhere): leave no empty folder behind.
  if (!distExisted) await Deno.remove(`${root}dist`).catch(() => {});
  const err = new TextDecoder().decode(out.stderr);
  await Deno.stderr.write(new TextEncoder().encode(err));
  if (!out.success) {
    if (/denort|dl\.deno\.land|error sending request|dns error/i.test(err)) {
      console.error(
        `compile: could not get the Deno runtime stub (denort ${Deno.version.deno}). Either build where ` +
          `dl.deno.land is reachable, or download denort-<target>.zip for Deno ${Deno.version.deno} from ` +
          `https://dl.deno.land/release/v${Deno.version.deno}/ elsewhere, unzip it, and set DENORT_BIN=/path/to/denort.`,
      );
    }
    Deno.exit(1);
  }
  console.error(`compile: wrote ${output}`);
}
