/**
 * makemore-webgpu: a character-level MLP language model (makemore part 3) trained by
 * hand-written WGSL compute shaders through Deno's WebGPU, with a pure-TypeScript reference
 * of every op.
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
export { CpuModel, type Mode } from "./src/cpu/model.ts";
