/**
 * Compiles the WGSL kernels (shaders/) into compute pipelines that share one pipeline layout:
 * group 0 is the per-pass Step uniform (with a dynamic offset, so a whole chunk of steps can be
 * encoded against one buffer), group 1 the per-layer Op uniforms and the storage buffers. See
 * shaders/common.wgsl for the bindings.
 */

const SHADERS = new URL("../../shaders/", import.meta.url);
/** Function libraries prepended to every kernel file, after common.wgsl. */
const LIBRARIES = ["common.wgsl", "sgd.wgsl", "tanh.wgsl", "batchnorm.wgsl"];

/**
 * Each kernel: file, entry point, and its override constants: WINDOWS (read shared operands
 * through uniform windows) and DIAG (also write diagnostics), see linear.wgsl.
 */
export const ENTRY_POINTS = {
  embeddingForward: ["embedding.wgsl", "embedding_forward", {}],
  embeddingBackward: ["embedding.wgsl", "embedding_backward", { WINDOWS: 0, DIAG: 0 }],
  embeddingBackwardWindowed: ["embedding.wgsl", "embedding_backward", { WINDOWS: 1, DIAG: 0 }],
  embeddingBackwardDiag: ["embedding.wgsl", "embedding_backward", { WINDOWS: 0, DIAG: 1 }],
  embeddingBackwardWindowedDiag: ["embedding.wgsl", "embedding_backward", { WINDOWS: 1, DIAG: 1 }],
  linearForward: ["linear.wgsl", "linear_forward", { WINDOWS: 0 }],
  linearForwardWindowed: ["linear.wgsl", "linear_forward", { WINDOWS: 1 }],
  linearBackward: ["linear.wgsl", "linear_backward", { WINDOWS: 0, DIAG: 0 }],
  linearBackwardWindowed: ["linear.wgsl", "linear_backward", { WINDOWS: 1, DIAG: 0 }],
  linearBackwardDiag: ["linear.wgsl", "linear_backward", { WINDOWS: 0, DIAG: 1 }],
  linearBackwardWindowedDiag: ["linear.wgsl", "linear_backward", { WINDOWS: 1, DIAG: 1 }],
  crossEntropy: ["cross_entropy.wgsl", "cross_entropy", {}],
} as const;

export type KernelName = keyof typeof ENTRY_POINTS;

/** linear.wgsl's tile constants, which the host needs to size its grids. */
export interface LinearTiles {
  readonly RB: number;
  readonly RK: number;
  readonly WX: number;
  readonly WY: number;
}

export interface Kernels {
  readonly pipelines: Record<KernelName, GPUComputePipeline>;
  readonly tiles: LinearTiles;
  readonly stepLayout: GPUBindGroupLayout;
  readonly opLayout: GPUBindGroupLayout;
}

/** The WGSL source of one kernel file with its libraries, as compiled. */
export async function kernelSource(file: string): Promise<string> {
  const parts = await Promise.all(
    [...LIBRARIES, file].map((f) => Deno.readTextFile(new URL(f, SHADERS))),
  );
  return parts.join("\n");
}

export async function createKernels(device: GPUDevice): Promise<Kernels> {
  const C = GPUShaderStage.COMPUTE;
  const stepLayout = device.createBindGroupLayout({
    label: "step",
    entries: [{ binding: 0, visibility: C, buffer: { type: "uniform", hasDynamicOffset: true } }],
  });
  const storage = (binding: number, type: GPUBufferBindingType) => ({
    binding,
    visibility: C,
    buffer: { type },
  });
  const opLayout = device.createBindGroupLayout({
    label: "op",
    entries: [
      storage(0, "uniform"), // op
      storage(1, "uniform"), // prev
      storage(2, "read-only-storage"), // P
      storage(3, "storage"), // Pn
      storage(4, "read-only-storage"), // In
      storage(5, "storage"), // Out
      storage(6, "read-only-storage"), // Gin
      storage(7, "storage"), // Gout
      storage(8, "read-only-storage"), // D
      storage(9, "storage"), // Host
      storage(10, "uniform"), // InWindow
      storage(11, "uniform"), // GinWindow
      { binding: 12, visibility: C, texture: { sampleType: "unfilterable-float" } }, // W
      {
        binding: 13,
        visibility: C,
        storageTexture: { access: "write-only", format: "rgba32float" },
      }, // Wn
    ],
  });
  const layout = device.createPipelineLayout({ bindGroupLayouts: [stepLayout, opLayout] });
  const files = [...new Set(Object.values(ENTRY_POINTS).map(([f]) => f))];
  const modules = new Map<string, GPUShaderModule>();
  for (const file of files) {
    const code = await kernelSource(file);
    device.pushErrorScope("validation");
    const module = device.createShaderModule({ label: file, code });
    const error = await device.popErrorScope();
    if (error) throw new Error(`${file}: ${error.message}`);
    modules.set(file, module);
  }
  const entries = Object.entries(ENTRY_POINTS) as [
    KernelName,
    readonly [string, string, Record<string, number>],
  ][];
  const compiled = await Promise.all(entries.map(async ([name, [file, entryPoint, constants]]) => {
    device.pushErrorScope("validation");
    const pipeline = await device.createComputePipelineAsync({
      label: name,
      layout,
      compute: {
        module: modules.get(file)!,
        entryPoint,
        constants,
      },
    });
    const error = await device.popErrorScope();
    if (error) throw new Error(`${entryPoint}: ${error.message}`);
    return [name, pipeline] as const;
  }));
  const linear = await Deno.readTextFile(new URL("linear.wgsl", SHADERS));
  const tile = (name: string) => {
    const m = linear.match(new RegExp(`^const ${name} = (\\d+)u;`, "m"));
    if (!m) throw new Error(`linear.wgsl: no constant ${name}`);
    return Number(m[1]);
  };
  return {
    pipelines: Object.fromEntries(compiled) as Record<KernelName, GPUComputePipeline>,
    tiles: { RB: tile("RB"), RK: tile("RK"), WX: tile("WX"), WY: tile("WY") },
    stepLayout,
    opLayout,
  };
}
