/**
 * makemore-webgpu: character-level language models (makemore part 3's MLP, part 5's WaveNet,
 * or any list of its layers) trained by hand-written WGSL compute shaders through WebGPU, with a
 * pure-TypeScript reference of every op. The library runs wherever WebGPU does (Deno, a web page); the command-line tools
 * (`deno task train`, `sample`, `plot`) are built on it.
 *
 * Data flows one way: a words file -> a dataset (vocabulary, split, examples) -> a backend
 * (the WebGPU kernels, or the CPU reference) driven by a Trainer -> checkpoints -> samples.
 *
 * @example Train the lecture's network for a few hundred steps, then sample names
 * ```ts
 * import names from "./data/names.txt" with { type: "text" };
 * import {
 *   DEFAULT_SCHEDULE, initModel, makeDataset, MemorySinks, openBackend, parseWords, PRESETS, Rng,
 *   sampleNames, SILENT, Trainer,
 * } from "./mod.ts";
 *
 * const words = parseWords(new TextEncoder().encode(names), "names.txt");
 * const dataset = makeDataset(words, 3, 42); // context of 3 characters, split seed 42
 * const config = { ...PRESETS.lecture.model, vocabSize: dataset.vocab.size };
 * const train = { ...PRESETS.lecture.train, steps: 300 };
 * const backend = await openBackend({ kind: "webgpu", config, batchSize: train.batchSize });
 * try {
 *   const init = initModel(config, new Rng(43));
 *   backend.setParams(init.params, init.buffers);
 *   const sinks = new MemorySinks();
 *   const trainer = new Trainer({
 *     config, train, seed: 42, dataset, backend, sinks, reporter: SILENT,
 *     data: { path: "names.txt", sha256: "0".repeat(64) },
 *     schedule: { ...DEFAULT_SCHEDULE, evalEvery: 0, diagnostics: false },
 *   });
 *   await trainer.train();
 *   const done = await trainer.finish();
 *   console.log("val loss", done!.losses.val.toFixed(3)); // ~2.5 after 300 steps
 *   const ck = sinks.checkpoint!;
 *   console.log(sampleNames(config, ck.params, ck.buffers, dataset.vocab, { count: 5, seed: 1 }));
 * } finally {
 *   backend.destroy();
 * }
 * ```
 *
 * @module
 */

export { UserError } from "./src/errors.ts";
export { Rng } from "./src/rng.ts";
export {
  type Dataset,
  type Examples,
  makeDataset,
  parseWords,
  sha256Hex,
  type Split,
  Vocab,
} from "./src/data.ts";
export {
  type Activation,
  ACTIVATIONS,
  type Layer,
  layerText,
  mlp,
  networkText,
  parseNetwork,
  wavenet,
} from "./src/layers.ts";
export {
  initModel,
  type ModelConfig,
  networkOf,
  type PresetName,
  PRESETS,
  resizeModel,
  type TrainConfig,
} from "./src/model.ts";
export { type Backend, type BackendOptions, openBackend } from "./src/backend.ts";
export {
  type Finished,
  type LogEntry,
  type Losses,
  MemorySinks,
  type Progress,
  type Reporter,
  SILENT,
  type Sinks,
  Trainer,
  type TrainerSetup,
  validateTraining,
} from "./src/training.ts";
export { DEFAULT_SCHEDULE, type Schedule } from "./src/schedule.ts";
export {
  type Checkpoint,
  decodeCheckpoint,
  encodeCheckpoint,
  type TrainingState,
} from "./src/checkpoint.ts";
export { generateNames, sampleNames, type SampleOptions } from "./src/sample.ts";
export type { Diagnostics, SnapshotSummary } from "./src/diagnostics.ts";
export { figureSpecs, renderSvg } from "./src/figures.ts";
