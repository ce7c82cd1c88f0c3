/**
 * makemore-webgpu: a character-level MLP language model (makemore part 3) trained by
 * hand-written WGSL compute shaders through Deno's WebGPU, with a pure-TypeScript reference
 * of every op.
 *
 * The data flows one way: data -> model -> trainer -> checkpoint -> sampler.
 *
 * @module
 */

export { UserError } from "./src/errors.ts";
export { Rng, type RngState } from "./src/rng.ts";
export {
  buildExamples,
  type Dataset,
  type Examples,
  makeDataset,
  parseWords,
  readWords,
  type Split,
  splitWords,
  Vocab,
} from "./src/data.ts";
export {
  initModel,
  type LayerSpec,
  learningRate,
  type ModelConfig,
  type ModelLayout,
  modelLayout,
  type Preset,
  type PresetName,
  PRESETS,
  type Tensor,
  type TrainConfig,
  view,
} from "./src/model.ts";
export { drawBatches } from "./src/batches.ts";
export { CpuModel, type Mode } from "./src/cpu/model.ts";
export { type AdapterReport, describeAdapter, type Gpu, openGpu } from "./src/gpu/device.ts";
export {
  type ChunkDiagnostics,
  type ChunkResult,
  GpuModel,
  type GpuModelOptions,
} from "./src/gpu/model.ts";
export { type Backend, openBackend } from "./src/backend.ts";
export { type Progress, type Reporter, run, type RunOptions, type RunResult } from "./src/train.ts";
export {
  type Checkpoint,
  decodeCheckpoint,
  encodeCheckpoint,
  loadCheckpoint,
  saveCheckpoint,
  type TrainingState,
} from "./src/checkpoint.ts";
export { sampleNames, type SampleOptions } from "./src/sample.ts";
export {
  type Diagnostics,
  type Moments,
  type Snapshot,
  type SnapshotSummary,
  summarize,
  updateRatio,
} from "./src/diagnostics.ts";
export { plotRun } from "./src/plots.ts";
