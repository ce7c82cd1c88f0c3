/**
 * The WGSL sources, imported as text modules: no file system access, so the same code compiles
 * its kernels in Deno (with no --allow-read) and in a web page (bundled by `deno bundle`).
 *
 * A kernel file is compiled as: the declarations generated from src/gpu/abi.ts (structs,
 * constants, the family's tile sizes, bindings), common.wgsl, the op libraries, the file.
 */

import { wgslPrelude } from "./abi.ts";
import type { KernelFamily } from "./family.ts";
import common from "../../shaders/common.wgsl" with { type: "text" };
import sgd from "../../shaders/sgd.wgsl" with { type: "text" };
import tanh from "../../shaders/tanh.wgsl" with { type: "text" };
import activation from "../../shaders/activation.wgsl" with { type: "text" };
import batchnormBackward from "../../shaders/batchnorm_backward.wgsl" with { type: "text" };
import batchnorm from "../../shaders/batchnorm.wgsl" with { type: "text" };
import embedding from "../../shaders/embedding.wgsl" with { type: "text" };
import linear from "../../shaders/linear.wgsl" with { type: "text" };
import crossEntropy from "../../shaders/cross_entropy.wgsl" with { type: "text" };
import gpuLinear from "../../shaders/gpu/linear.wgsl" with { type: "text" };
import gpuEmbedding from "../../shaders/gpu/embedding.wgsl" with { type: "text" };

/** Every WGSL file, by its path under shaders/. */
export const SHADERS: Readonly<Record<string, string>> = {
  "common.wgsl": common,
  "sgd.wgsl": sgd,
  "tanh.wgsl": tanh,
  "activation.wgsl": activation,
  "batchnorm_backward.wgsl": batchnormBackward,
  "batchnorm.wgsl": batchnorm,
  "embedding.wgsl": embedding,
  "linear.wgsl": linear,
  "cross_entropy.wgsl": crossEntropy,
  "gpu/linear.wgsl": gpuLinear,
  "gpu/embedding.wgsl": gpuEmbedding,
};

/** Function libraries compiled before every kernel file, after common.wgsl. */
const LIBRARIES = ["common.wgsl", "sgd.wgsl", "tanh.wgsl", "activation.wgsl", "batchnorm.wgsl"];

/** The whole WGSL text of one kernel file of a family, as it is compiled. */
export function kernelSource(family: KernelFamily, file: string): string {
  const source = SHADERS[file];
  if (source === undefined) throw new Error(`no shader ${file}`);
  return [wgslPrelude(family.constants), ...LIBRARIES.map((f) => SHADERS[f]), source].join("\n");
}
