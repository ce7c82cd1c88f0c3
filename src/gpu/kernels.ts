/**
 * Compiles a kernel family's WGSL into compute pipelines that share one pipeline layout:
 * group 0 is the per-pass Step uniform and the replicas' hyper-parameters at that step (each at
 * a dynamic offset, so a whole chunk of steps is encoded against one buffer of each), group 1
 * the per-op bindings declared in src/gpu/abi.ts.
 */

import { bindGroupLayoutEntries } from "./abi.ts";
import type { KernelFamily } from "./family.ts";
import { kernelSource } from "./shaders.ts";

export interface Kernels {
  readonly family: KernelFamily;
  readonly pipelines: Readonly<Record<string, GPUComputePipeline>>;
  readonly stepLayout: GPUBindGroupLayout;
  readonly opLayout: GPUBindGroupLayout;
}

/** Compiles one WGSL module, turning a validation error into an exception naming it. */
export async function compileModule(
  device: GPUDevice,
  label: string,
  code: string,
): Promise<GPUShaderModule> {
  device.pushErrorScope("validation");
  const module = device.createShaderModule({ label, code });
  const error = await device.popErrorScope();
  if (error) throw new Error(`${label}: ${error.message}`);
  return module;
}

export async function createKernels(device: GPUDevice, family: KernelFamily): Promise<Kernels> {
  const C = GPUShaderStage.COMPUTE;
  const stepLayout = device.createBindGroupLayout({
    label: "step",
    entries: [0, 1].map((binding) => ({
      binding,
      visibility: C,
      buffer: { type: "uniform", hasDynamicOffset: true },
    })),
  });
  const opLayout = device.createBindGroupLayout({
    label: "op",
    entries: bindGroupLayoutEntries(C, family.bindings),
  });
  const layout = device.createPipelineLayout({ bindGroupLayouts: [stepLayout, opLayout] });
  const modules = new Map<string, GPUShaderModule>();
  for (const file of family.files) {
    modules.set(file, await compileModule(device, file, kernelSource(family, file)));
  }
  const compiled = await Promise.all(
    Object.entries(family.entryPoints).map(async ([name, e]) => {
      device.pushErrorScope("validation");
      const pipeline = await device.createComputePipelineAsync({
        label: name,
        layout,
        compute: { module: modules.get(e.file)!, entryPoint: e.entry, constants: e.overrides },
      });
      const error = await device.popErrorScope();
      if (error) throw new Error(`${name} (${e.file}: ${e.entry}): ${error.message}`);
      return [name, pipeline] as const;
    }),
  );
  return { family, pipelines: Object.fromEntries(compiled), stepLayout, opLayout };
}
