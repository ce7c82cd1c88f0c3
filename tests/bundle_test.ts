/**
 * The training core is portable: bundled for the browser by `deno bundle`, the public API
 * (mod.ts: data, model, backends, training loop, checkpoints, sampling, figures) pulls in no
 * Deno API and no Node built-in, so the same code trains in a web page.
 */

import { assert, testWith } from "./util.ts";

/** Bundles `entry` for the browser into a string. */
export async function bundle(entry: string): Promise<string> {
  const dir = await Deno.makeTempDir({ prefix: "makemore-bundle-" });
  try {
    const out = `${dir}/bundle.js`;
    const r = await new Deno.Command(Deno.execPath(), {
      args: ["bundle", "--quiet", "--platform", "browser", "-o", out, entry],
      stdout: "piped",
      stderr: "piped",
    }).output();
    if (!r.success) throw new Error(`deno bundle ${entry}: ${new TextDecoder().decode(r.stderr)}`);
    return await Deno.readTextFile(out);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

testWith(
  ["read", "write", "run", "env"],
  "bundle: the public API bundles for the browser without any Deno or Node API",
  async () => {
    const code = await bundle(new URL("../mod.ts", import.meta.url).pathname);
    const deno = code.match(/\bDeno\.[A-Za-z]+/g) ?? [];
    assert(deno.length === 0, `the bundle uses ${[...new Set(deno)].join(", ")}`);
    const node = code.match(/(?:from\s*|import\(|require\()\s*["']node:[a-z/]+["']/g) ?? [];
    assert(node.length === 0, `the bundle imports ${[...new Set(node)].join(", ")}`);
    // It carries the kernels: the WGSL sources came in as modules, not files read at run time.
    assert(code.includes("fn linear_forward"), "the WGSL is inside the bundle");
  },
);
