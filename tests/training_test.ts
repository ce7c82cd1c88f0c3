/**
 * The portable training loop (src/training.ts) with in-memory sinks: what it saves, when it
 * refuses to, and how an interrupted run continues. No files: these run under plain
 * `deno test --unstable-webgpu`.
 */

import names from "../data/names.txt" with { type: "text" };
import { type BackendKind, openBackend } from "../src/backend.ts";
import { makeDataset, parseWords } from "../src/data.ts";
import { UserError } from "../src/errors.ts";
import { batchOf, drawBatches } from "../src/batches.ts";
import { CpuModel } from "../src/cpu/model.ts";
import {
  initModel,
  learningRate,
  type ModelConfig,
  PRESETS,
  type TrainConfig,
} from "../src/model.ts";
import { Rng } from "../src/rng.ts";
import type { Schedule } from "../src/schedule.ts";
import {
  type Finished,
  MemorySinks,
  type Progress,
  type Reporter,
  SILENT,
  Trainer,
  validateTraining,
} from "../src/training.ts";
import {
  assert,
  assertClose,
  assertEquals,
  assertRejects,
  assertThrows,
  conformantTolerances,
} from "./util.ts";

const words = parseWords(new TextEncoder().encode(names), "names.txt").slice(0, 2000);
const dataset = makeDataset(words, 3, 42);
const config: ModelConfig = {
  ...PRESETS.seed.model,
  vocabSize: dataset.vocab.size,
  nHidden: 16,
  nLayers: 2,
  nEmbd: 4,
};
const schedule: Schedule = {
  evalEvery: 200,
  checkpointEvery: 150,
  logEvery: 50,
  diagnostics: true,
  diagEvery: 0,
  calibrate: true,
  samples: 3,
};

/** A trainer on a fresh backend, from the initialization or from a checkpoint's state. */
async function trainer(
  kind: BackendKind,
  train: TrainConfig,
  sinks: MemorySinks,
  resumed?: MemorySinks,
  reporter: Reporter = SILENT,
) {
  const backend = await openBackend({ kind, config, batchSize: train.batchSize });
  const ck = resumed?.checkpoint;
  const init = ck ?? initModel(config, new Rng(43));
  backend.setParams(init.params, init.buffers);
  const t = new Trainer({
    config,
    train,
    seed: 42,
    dataset,
    data: { path: "names.txt", sha256: "0".repeat(64) },
    backend,
    schedule,
    sinks,
    reporter,
    resumed: ck ? { state: ck.state, diagnostics: resumed!.diagnostics! } : undefined,
  });
  return { t, backend, [Symbol.dispose]: () => backend.destroy() };
}

const train: TrainConfig = { steps: 500, batchSize: 16, lr: 0.1, lrFinal: 0.02, decayAt: 320 };

/** An uninterrupted run, for the others to equal. */
async function whole(): Promise<{ sinks: MemorySinks; done: Finished }> {
  const sinks = new MemorySinks();
  using r = await trainer("webgpu", train, sinks);
  await r.t.train();
  return { sinks, done: (await r.t.finish())! };
}

Deno.test("training: an interrupted run, resumed from its checkpoint, ends exactly like an uninterrupted one", async () => {
  const reference = await whole();
  // Stopped by its reporter at the first chunk boundary at or after step 260 (between
  // checkpoints, before the decay): where the chunks end, not when a clock fires.
  const first = new MemorySinks();
  {
    const stop = new AbortController();
    const reporter = { ...SILENT, progress: (p: Progress) => void (p.step >= 260 && stop.abort()) };
    using r = await trainer("webgpu", train, first, undefined, reporter);
    const t = r.t;
    await t.train(stop.signal);
    assert(t.step >= 260 && t.step < train.steps, `stopped early, at ${t.step}`);
    assertEquals(first.checkpoint!.state.step, t.step, "the stop saved a checkpoint");
  }
  const second = new MemorySinks();
  second.entries.push(...first.entries);
  using r = await trainer("webgpu", train, second, first);
  await r.t.train();
  const done = (await r.t.finish())!;
  assertEquals(second.entries, reference.sinks.entries);
  assertEquals(done.losses, reference.done.losses);
  assertEquals(done.params, reference.done.params);
  assertEquals(done.samples, reference.done.samples);
  assertEquals(second.diagnostics, reference.sinks.diagnostics);
});

Deno.test("training: stopped during the finish, the last checkpoint stands and a resumed run finishes it", async () => {
  const reference = await whole();
  const sinks = new MemorySinks();
  {
    using r = await trainer("webgpu", train, sinks);
    await r.t.train();
    const stop = new AbortController();
    stop.abort();
    assertEquals(await r.t.finish(stop.signal), null);
    assertEquals(sinks.checkpoint!.state.step, train.steps);
    assertEquals(
      sinks.checkpoint!.state.calibrated,
      false,
      "the saved statistics are the running ones",
    );
  }
  using r = await trainer("webgpu", train, new MemorySinks(), sinks);
  await r.t.train(); // nothing left to train
  const done = (await r.t.finish())!;
  assertEquals(done.losses, reference.done.losses);
  assertEquals(done.params, reference.done.params);
});

Deno.test("training: the finish calibrates BatchNorm over the training split, and measures train with it", async () => {
  using r = await trainer("cpu", { ...train, steps: 60 }, new MemorySinks());
  await r.t.train();
  const before = await r.backend.getParams();
  const done = (await r.t.finish())!;
  const expected = new CpuModel(config, before.params, before.buffers);
  expected.calibrate(dataset.examples.train);
  assertEquals(done.buffers, expected.buffers, "the statistics of the training split");
  assertEquals(done.losses.train, expected.evaluate(dataset.examples.train));
  assertEquals(done.losses.val, expected.evaluate(dataset.examples.val));
});

Deno.test("training: parameters that become infinite or NaN are never saved", async () => {
  // --lr 1e30 --steps 1: the one loss is finite (computed before the update) and the huge
  // weights too, but the calibration after them is not. --lr 1e39: the weights overflow at
  // once. Either way the run stops with one line, and whatever was saved is finite.
  for (const [lr, steps] of [[1e30, 1], [1e39, 300]]) {
    const sinks = new MemorySinks();
    using r = await trainer("webgpu", { ...train, steps, lr, decayAt: 10 ** 9 }, sinks);
    const err = await assertRejects(r.t.train().then(() => r.t.finish()), UserError);
    assert(/infinite or NaN|the loss became/.test(err.message), `lr ${lr}: ${err.message}`);
    const kept = sinks.checkpoint;
    if (kept) {
      assert(kept.params.every(Number.isFinite) && kept.buffers.every(Number.isFinite), `${lr}`);
      assert(
        err.message.includes(`the checkpoint of step ${kept.state.step} was kept`),
        err.message,
      );
    } else assert(err.message.includes("no checkpoint was written"), err.message);
  }
});

Deno.test("training: a tiny data file's empty splits are warned about, not a silent NaN", () => {
  const tiny = makeDataset(words.slice(0, 4), 3, 42); // 3 words to train on, none for val
  assertEquals(tiny.examples.val.n, 0);
  const warnings = validateTraining(
    { ...config, vocabSize: tiny.vocab.size },
    { ...train, batchSize: 2 },
    tiny,
  );
  assertEquals(warnings.length, 1);
  assert(/the val split is empty \(the data has only 4 lines\)/.test(warnings[0]), warnings[0]);
  const err = assertThrows(
    () =>
      validateTraining(
        { ...config, vocabSize: tiny.vocab.size },
        { ...train, batchSize: 500 },
        tiny,
      ),
    UserError,
  );
  assert(/larger than the training split/.test(err.message), err.message);
});

/**
 * A plain loop of the CPU reference over the batches a Trainer draws (seed + 2, drawn in order,
 * whatever the chunks), at a learning rate written out here rather than taken from the code
 * under test: the mean loss of each logEvery steps, with the rate of the window's last step.
 */
function plainLoop(
  model: CpuModel,
  train: TrainConfig,
  rate: (step: number) => number,
): { step: number; loss: number; lr: number }[] {
  const batches = drawBatches(
    new Rng(42 + 2),
    dataset.examples.train,
    train.steps,
    train.batchSize,
  );
  const log: { step: number; loss: number; lr: number }[] = [];
  let sum = 0;
  let count = 0;
  for (let s = 0; s < train.steps; s++) {
    const { ctx, targets } = batchOf(batches, s, train.batchSize, config.blockSize);
    sum += model.step(ctx, targets, rate(s));
    count++;
    if ((s + 1) % schedule.logEvery === 0 || s + 1 === train.steps) {
      log.push({ step: s + 1, loss: sum / count, lr: rate(s) });
      sum = 0;
      count = 0;
    }
  }
  return log;
}

Deno.test("training: each step runs at its own learning rate, a decay inside a chunk too, as a plain loop does", async () => {
  // Steps 2..120 are one chunk (the first step is a snapshot boundary); the decay is at 70.
  const short = { ...train, steps: 120, decayAt: 70 };
  const sinks = new MemorySinks();
  let params: Float32Array;
  {
    using r = await trainer("cpu", short, sinks);
    await r.t.train();
    params = (await r.backend.getParams()).params;
  }
  const init = initModel(config, new Rng(43));
  const reference = new CpuModel(config, init.params, init.buffers);
  // 0-based step s trains at 0.1 before the decay, 0.02 from step 70 on.
  const log = plainLoop(reference, short, (s) => (s < 70 ? 0.1 : 0.02));
  const losses = sinks.entries.filter((e) => "loss" in e);
  assertEquals(losses.map((e) => e.step), log.map((e) => e.step));
  assertEquals(losses.map((e) => ("lr" in e ? e.lr : NaN)), log.map((e) => e.lr));
  losses.forEach((e, i) =>
    assertEquals("loss" in e && Math.fround(e.loss), Math.fround(log[i].loss))
  );
  assertEquals(params, reference.params, "the same parameters, bit for bit");
});

Deno.test("training: the CPU reference backend trains the same steps as the GPU", async () => {
  const short = { ...train, steps: 120 };
  const run = async (kind: BackendKind) => {
    const sinks = new MemorySinks();
    using r = await trainer(kind, short, sinks);
    await r.t.train();
    return sinks.entries.map((e) => ("loss" in e ? e.loss : (e as { val: number }).val));
  };
  const cpu = await run("cpu");
  const webgpu = await run("webgpu");
  const init = initModel(config, new Rng(43));
  const tol = conformantTolerances((make) => {
    const model = make(config, init.params, init.buffers);
    return { losses: plainLoop(model, short, (s) => learningRate(short, s)).map((e) => e.loss) };
  });
  assertClose("the logged losses", webgpu, cpu, tol.losses);
});
