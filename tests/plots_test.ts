/** The figures and the report of a short real run: produced, non-empty, valid, legible. */

import names from "../data/names.txt" with { type: "text" };
import { figureSpecs } from "../src/figures.ts";
import { plotRun } from "../src/plots.ts";
import { run, type RunReporter } from "../src/run.ts";
import { PRESETS } from "../src/model.ts";
import { UserError } from "../src/errors.ts";
import { assert, assertEquals, assertRejects, testWith } from "./util.ts";

/** Well-formedness: every element closed, in order (comments, declarations, CDATA skipped). */
function assertWellFormedXml(xml: string, name: string): void {
  const stack: string[] = [];
  const body = xml.replace(
    /<!--[\s\S]*?-->|<!\[CDATA\[[\s\S]*?\]\]>|<\?[\s\S]*?\?>|<!DOCTYPE[^>]*>/g,
    "",
  );
  for (const m of body.matchAll(/<(\/?)([A-Za-z][\w:.-]*)((?:\s+[^>]*?)?)(\/?)>/g)) {
    const [, close, tag, , self] = m;
    if (self) continue;
    if (close) {
      const open = stack.pop();
      assertEquals(open, tag, `${name}: </${tag}> closes <${open}>`);
    } else stack.push(tag);
  }
  assertEquals(stack, [], `${name}: unclosed elements`);
}

function pngSize(png: Uint8Array): [number, number] {
  const signature = [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a];
  assertEquals(Array.from(png.subarray(0, 8)), signature, "PNG signature");
  const dv = new DataView(png.buffer, png.byteOffset);
  assertEquals(new TextDecoder().decode(png.subarray(12, 16)), "IHDR");
  return [dv.getUint32(16), dv.getUint32(20)];
}

const quiet: RunReporter = { start() {}, progress() {}, note() {} };

testWith(
  ["read", "write"],
  "plots: a run's figures are valid SVG and PNG, with the expected titles and legends",
  async () => {
    const dir = await Deno.makeTempDir({ prefix: "makemore-plots-" });
    try {
      await Deno.writeTextFile(`${dir}/names.txt`, names.split("\n").slice(0, 300).join("\n"));
      await run({
        dataPath: `${dir}/names.txt`,
        outDir: `${dir}/run`,
        model: { ...PRESETS.seed.model, nHidden: 24, nLayers: 2 },
        train: { ...PRESETS.seed.train, steps: 600, decayAt: 400 },
        seed: 1,
        backend: "webgpu",
        kernels: "auto",
        mode: "new",
        schedule: {
          evalEvery: 300,
          checkpointEvery: 10_000,
          calibrate: true,
          logEvery: 100,
          samples: 4,
          diagnostics: true,
          diagEvery: 300,
        },
      }, quiet);
      const written = await plotRun(`${dir}/run`);
      const figures = {
        loss: ["Loss", "train (mean of 100 steps)", "val"],
        activations: [
          "Activations &amp; saturation",
          "step 1 (initialization)",
          "step 600 (end)",
          "saturated",
        ],
        gradients: ["Gradients flowing into each tanh output", "layer 1 (mean"],
        "weight-gradients": ["Weight gradients", "hidden.1.weight 24x24", "grad:data ratio"],
        "update-ratio": ["Update-to-data ratio", "guide: 1e-3", "output.weight"],
      };
      for (const [name, texts] of Object.entries(figures)) {
        assert(written.includes(`${name}.svg`) && written.includes(`${name}.png`), name);
        const svg = await Deno.readTextFile(`${dir}/run/${name}.svg`);
        assert(svg.startsWith("<svg") && svg.trimEnd().endsWith("</svg>"), `${name}.svg`);
        assertWellFormedXml(svg, `${name}.svg`);
        for (const t of texts) assert(svg.includes(t), `${name}.svg shows '${t}'`);
        assert(!svg.includes("…"), `${name}.svg: no truncated legend label`);
        const [w, h] = pngSize(await Deno.readFile(`${dir}/run/${name}.png`));
        assert(w >= 1000 && h >= 500, `${name}.png is ${w} x ${h}`);
      }
      const html = await Deno.readTextFile(`${dir}/run/report.html`);
      assertWellFormedXml(html.replace(/<meta[^>]*>/g, ""), "report.html");
      const report = JSON.parse(await Deno.readTextFile(`${dir}/run/run.json`));
      assert(html.includes(report.losses.val.toFixed(4)), "report shows the val loss");
      for (const name of Object.keys(figures)) {
        assert(html.includes(`<figure id="${name}"><svg`), name);
      }
      assert(!/src="http|href="http/.test(html), "self-contained: nothing fetched");
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
);

testWith(
  ["read", "write"],
  "plots: what a run left half-written is skipped, never a crash",
  async () => {
    const dir = await Deno.makeTempDir({ prefix: "makemore-plots-" });
    try {
      await assertRejects(plotRun(`${dir}/none`), UserError);
      await assertRejects(plotRun(dir), UserError); // an empty directory: nothing to plot
      // A log cut off mid-line, a null loss (an empty val split), an empty diagnostics.json.
      await Deno.writeTextFile(
        `${dir}/log.jsonl`,
        '{"step":100,"loss":3.1,"lr":0.1}\n{"step":100,"val":null}\n{"step":200,"loss":2.9,"lr":0.1}\n{"st',
      );
      await Deno.writeTextFile(`${dir}/diagnostics.json`, "");
      await Deno.writeTextFile(
        `${dir}/run.json`,
        '{"losses":{"train":2.5,"val":null,"test":null}}',
      );
      const written = await plotRun(dir);
      assertEquals(written, ["loss.png", "loss.svg", "report.html"]);
      const html = await Deno.readTextFile(`${dir}/report.html`);
      assert(html.includes("<th>val loss</th><td>n/a</td>"), "a missing loss reads n/a");
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
);

Deno.test("figures: no data gives no figure; a missing update ratio is skipped", () => {
  assertEquals([...figureSpecs([], null).keys()], []);
  const specs = figureSpecs([{ step: 100, loss: 3, lr: 0.1 }], {
    snapshots: [],
    updateRatios: { steps: [100, 200], tensors: [{ name: "w", log10: [-3, null as never] }] },
  });
  assertEquals([...specs.keys()], ["loss", "update-ratio"]);
  const layers = (specs.get("update-ratio") as { layer: { data: { values: unknown[] } }[] }).layer;
  assertEquals(layers[0].data.values, [{ step: 100, y: -3, name: "w" }]);
});
