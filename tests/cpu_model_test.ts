import names from "../data/names.txt" with { type: "text" };
import { CpuModel } from "../src/cpu/model.ts";
import { makeDataset, parseWords } from "../src/data.ts";
import { initModel, learningRate, type ModelConfig, modelLayout, PRESETS } from "../src/model.ts";
import { parseNetwork, summary } from "../src/layers.ts";
import { Rng } from "../src/rng.ts";
import { assert, assertEquals, assertGradClose, randInts } from "./util.ts";

const small = (over: Partial<ModelConfig>): ModelConfig => ({
  ...PRESETS.seed.model,
  vocabSize: 6,
  blockSize: 3,
  nEmbd: 4,
  nHidden: 7,
  nLayers: 2,
  ...over,
});

const variants: [string, ModelConfig][] = [
  ["seed-shaped (output BatchNorm)", small({})],
  [
    "without BatchNorm (hidden and output Linear with bias)",
    small({ batchNorm: false, outputBatchNorm: false, outputBias: true, nLayers: 3 }),
  ],
  [
    "lecture-shaped (output bias)",
    small({ ...PRESETS.lecture.model, vocabSize: 5, nHidden: 9, nEmbd: 3, blockSize: 2 }),
  ],
  // makemore part 5's shape: the context joined two by two, BatchNorm over every row of a
  // block (batch and positions), a ReLU block, an output BatchNorm.
  [
    "hierarchical (FlattenConsecutive, ReLU)",
    listed(
      "Embedding(3) FlattenConsecutive(2) Linear(8, bias=False) BatchNorm1d Tanh " +
        "FlattenConsecutive(2) Linear(4) ReLU FlattenConsecutive(2) Linear(8, bias=False) " +
        "BatchNorm1d Tanh Linear(bias=False) BatchNorm1d",
      8,
    ),
  ],
];

/** A small config from a list of layers, as written. */
function listed(text: string, blockSize: number): ModelConfig {
  const layers = parseNetwork(text);
  if (typeof layers === "string") throw new Error(layers);
  return small({ blockSize, layers, ...summary(layers) });
}

for (const [name, config] of variants) {
  Deno.test(`model (cpu reference, ${name}): every parameter's gradient matches finite differences`, () => {
    const init = initModel(config, new Rng(11));
    // Larger output weights than the lecture's 0.01, so every gradient is well above rounding.
    const params = Float64Array.from(init.params, (v) => v * 3);
    const model = new CpuModel(config, params, Float64Array.from(init.buffers));
    const rng = new Rng(12);
    const B = 5;
    const ctx = randInts(rng, B * config.blockSize, config.vocabSize);
    const targets = randInts(rng, B, config.vocabSize);
    const f = () => model.forward(ctx, targets, "train");
    f();
    model.backward(targets);
    const grads = Float64Array.from(model.grads);
    for (const t of model.layout.params) {
      const x = params.subarray(t.offset, t.offset + t.size);
      const g = grads.subarray(t.offset, t.offset + t.size);
      assertGradClose(t.name, x, g, f);
    }
  });
}

Deno.test("model: the WaveNet preset has makemore part 5's 76,579 parameters", () => {
  const layout = modelLayout({ ...PRESETS.wavenet.model, vocabSize: 27 });
  assertEquals(layout.nParams, 76_579);
  assertEquals(layout.layers.map((l) => [l.nIn, l.nOut, l.positions]), [
    [48, 128, 4],
    [256, 128, 2],
    [256, 128, 1],
    [128, 27, 1],
  ]);
  assertEquals([layout.group, layout.positions], [2, 4]);
  // A preset's sizes say what its list says.
  const { nEmbd, nHidden, nLayers, batchNorm, outputBias, outputBatchNorm } = PRESETS.wavenet.model;
  assertEquals(
    { nEmbd, nHidden, nLayers, batchNorm, outputBias, outputBatchNorm },
    summary(PRESETS.wavenet.model.layers),
  );
});

Deno.test("model: the layout of the presets (makemore part 3's parameter counts)", () => {
  const layout = modelLayout({ ...PRESETS.seed.model, vocabSize: 27 });
  assertEquals(layout.params.map((t) => t.name).slice(0, 4), [
    "embedding.weight",
    "hidden.0.weight",
    "hidden.0.bn.gamma",
    "hidden.0.bn.beta",
  ]);
  // 270 + 30*200 + 4*200*200 + 200*27 + 5*400 + 2*27: makemore part 3 reports 47,551 for the
  // 100-wide version; this is the 200-wide one.
  assertEquals(layout.nParams, 270 + 6000 + 160000 + 5400 + 2000 + 54);
  assertEquals(layout.nBuffers, 2 * (5 * 200 + 27));
  const lecture = modelLayout({ ...PRESETS.lecture.model, vocabSize: 27 });
  assertEquals(lecture.nParams, 12_097); // makemore part 3's first network
});

Deno.test("model (cpu reference): the untrained loss is close to ln(vocab), then training lowers it", () => {
  const words = parseWords(new TextEncoder().encode(names), "names.txt");
  const ds = makeDataset(words, 3, 42);
  for (const preset of ["seed", "lecture"] as const) {
    const config = {
      ...PRESETS[preset].model,
      vocabSize: ds.vocab.size,
      nHidden: 64,
      nLayers: preset === "seed" ? 2 : 1,
    };
    const { params, buffers } = initModel(config, new Rng(1));
    const model = new CpuModel(config, params, buffers);
    const rng = new Rng(2);
    const B = 32;
    const batch = () => {
      const ix = Array.from({ length: B }, () => rng.randint(ds.examples.train.n));
      const ctx = new Int32Array(B * 3);
      const y = new Int32Array(B);
      ix.forEach((i, b) => {
        ctx.set(ds.examples.train.x.subarray(3 * i, 3 * i + 3), 3 * b);
        y[b] = ds.examples.train.y[i];
      });
      return [ctx, y] as const;
    };
    const [ctx0, y0] = batch();
    const initial = model.forward(ctx0, y0, "eval");
    const losses: number[] = [];
    for (let s = 0; s < 300; s++) {
      const [ctx, y] = batch();
      losses.push(model.step(ctx, y, learningRate(PRESETS[preset].train, s)));
    }
    const last = losses.slice(-50).reduce((a, b) => a + b) / 50;
    assert(Math.abs(initial - Math.log(27)) < 0.1, `${preset}: initial loss ${initial}`);
    assert(last < 2.85, `${preset}: loss after 300 steps ${last}`);
  }
});

Deno.test("model: the initialization knobs: Kaiming gain, unit init, output scale", () => {
  const config = (over: Partial<ModelConfig>): ModelConfig =>
    small({ vocabSize: 27, nHidden: 300, nLayers: 2, nEmbd: 20, blockSize: 5, ...over });
  const std = (c: ModelConfig, name: string) => {
    const { params } = initModel(c, new Rng(5));
    const t = modelLayout(c).params.find((p) => p.name === name)!;
    const v = params.subarray(t.offset, t.offset + t.size);
    return Math.sqrt(v.reduce((a, x) => a + x * x, 0) / v.length);
  };
  const near = (got: number, want: number) =>
    assert(Math.abs(got / want - 1) < 0.03, `std ${got}, expected ${want}`);
  near(std(config({}), "hidden.1.weight"), (5 / 3) / Math.sqrt(300));
  near(std(config({ tanhGain: 0.5 }), "hidden.0.weight"), 0.5 / Math.sqrt(100));
  near(std(config({ init: "unit" }), "hidden.1.weight"), 1);
  near(std(config({ init: "unit" }), "output.weight"), 1);
  near(std(config({ init: "unit", outputInit: 0.01 }), "output.weight"), 0.01);
  const noBn = config({ batchNorm: false, outputBatchNorm: false, outputBias: true });
  const names = modelLayout(noBn).params.map((t) => t.name);
  assertEquals(names.filter((n) => n.includes(".bn.")), []);
  assert(names.includes("hidden.0.bias") && names.includes("output.bias"), names.join());
  const { params } = initModel({ ...small({}), outputGamma: 0.25 }, new Rng(1));
  const gamma = modelLayout(small({})).params.find((t) => t.name === "output.bn.gamma")!;
  assertEquals(params[gamma.offset], 0.25);
});
