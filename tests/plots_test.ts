/** The figures and the report of a short real run: produced, non-empty, valid, legible. */

import { plotRun } from "../src/plots.ts";
import { type Reporter, run } from "../src/train.ts";
import { PRESETS } from "../src/model.ts";
import { assert, assertEquals } from "./util.ts";

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

const quiet: Reporter = { start() {}, progress() {}, note() {} };

Deno.test("plots: a run's figures are valid SVG and PNG, with the expected titles and legends", async () => {
  const dir = await Deno.makeTempDir({ prefix: "makemore-plots-" });
  try {
    const names = (await Deno.readTextFile(new URL("../data/names.txt", import.meta.url)))
      .split("\n").slice(0, 300).join("\n");
    await Deno.writeTextFile(`${dir}/names.txt`, names);
    await run({
      dataPath: `${dir}/names.txt`,
      outDir: `${dir}/run`,
      model: { ...PRESETS.seed.model, nHidden: 24, nLayers: 2 },
      train: { ...PRESETS.seed.train, steps: 600, decayAt: 400 },
      seed: 1,
      backend: "webgpu",
      resume: false,
      evalEvery: 300,
      checkpointEvery: 10_000,
      calibrate: true,
      logEvery: 100,
      samples: 4,
      diagnostics: true,
      diagEvery: 300,
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
});
