/**
 * The import graph runs one way: commands -> run -> model and backends -> kernels and data.
 * Every module of src/ is assigned to a layer here, and may import only from its own layer or
 * the ones below; outside src/gpu/ and src/cpu/, only the backend module reaches into them.
 */

import { assert, assertEquals, testWith } from "./util.ts";

const LAYERS: [string, RegExp][] = [
  // Kernels and data: what everything else is made of.
  [
    "kernels and data",
    /^(errors|rng|data|batches|layers|model|schedule|checkpoint|diagnostics|format|settings|cpu\/(linear|batchnorm|tanh|relu|embedding|cross_entropy|sgd|types)|gpu\/(abi|accuracy|expected|shaders|kernels|family|software|gpu|plan|layout|readback|resources|device))\.ts$/,
  ],
  // Models on a backend, and what only needs a model.
  [
    "model and backends",
    /^(cpu\/(model|backend)|gpu\/(model|backend|selftest|kernel_check|replica_check|passes|speed|group)|backend|sample)\.ts$/,
  ],
  // Training: the portable loop, and around it the run directory and figures.
  [
    "run",
    /^(training|figures|run|run_group|run_dir|run_setup|files|plots|batch_runs|sweep|experiments|lr_find|lab\/.*)\.ts$/,
  ],
  ["commands", /^cli\/.*\.ts$/],
];

function layerOf(path: string): number {
  const i = LAYERS.findIndex(([, re]) => re.test(path));
  if (i < 0) throw new Error(`src/${path} is in no layer: add it to tests/layers_test.ts`);
  return i;
}

async function* modules(dir: URL, prefix = ""): AsyncGenerator<string> {
  for await (const e of Deno.readDir(dir)) {
    if (e.isDirectory) yield* modules(new URL(`${e.name}/`, dir), `${prefix}${e.name}/`);
    else if (e.name.endsWith(".ts")) yield prefix + e.name;
  }
}

testWith(["read"], "layers: no module of src/ imports from a layer above its own", async () => {
  const src = new URL("../src/", import.meta.url);
  const wrong: string[] = [];
  let count = 0;
  for await (const path of modules(src)) {
    count++;
    const text = await Deno.readTextFile(new URL(path, src));
    const from = layerOf(path);
    const imports = text.matchAll(/^(?:import|export)\b[^;]*?\bfrom\s*["'](\.[^"']+\.ts)["']/gm);
    for (const [, spec] of imports) {
      const target = new URL(spec, new URL(path, src)).pathname.slice(src.pathname.length);
      if (target.startsWith("..")) continue;
      const to = layerOf(target);
      if (to > from) {
        wrong.push(`${path} (${LAYERS[from][0]}) imports ${target} (${LAYERS[to][0]})`);
      }
      const inside = (p: string) => /^(gpu|cpu)\//.test(p);
      // The backend module opens the backends; sampling runs the CPU model; the lab page,
      // like the bench, offers the kernels' self-test and speed measurement.
      const allowed = ["backend.ts", "sample.ts", "lab/main.ts", "lab/hooks.ts"];
      if (inside(target) && !inside(path) && !allowed.includes(path)) {
        wrong.push(`${path} reaches into ${target}: only ${allowed.join(", ")} may`);
      }
    }
  }
  assert(count > 20, `found ${count} modules`);
  assertEquals(wrong, []);
});
