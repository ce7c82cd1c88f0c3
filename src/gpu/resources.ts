/**
 * The GPU objects of a model, made once from its plan: buffers, weight textures, the op
 * uniforms (written once: they never change) and the bind groups, one per op and parity of the
 * parameter copies. Nothing here runs per step.
 */

import { type BindingName, BINDINGS, C, OP, REPLICAS_BYTES, STEP, UNIFORM_STRIDE } from "./abi.ts";
import type { Kernels } from "./kernels.ts";
import type { Plan } from "./plan.ts";

export type Pair<T> = readonly [T, T];

export interface Resources {
  /** The parameters (non-weight tensors) and running statistics, two copies. */
  readonly params: Pair<GPUBuffer>;
  /** Each layer's weight, two copies that swap roles like the parameter buffers. */
  readonly weights: readonly Pair<GPUTexture>[];
  readonly activations: Pair<GPUBuffer>;
  readonly gradients: Pair<GPUBuffer>;
  readonly data: GPUBuffer;
  readonly host: GPUBuffer;
  readonly steps: GPUBuffer;
  /** Per step slot, every replica's hyper-parameters (REPLICAS_BYTES a slot). */
  readonly replicas: GPUBuffer;
  readonly stepGroup: GPUBindGroup;
  /** [op][parity of the parameter copies]. */
  readonly groups: readonly Pair<GPUBindGroup>[];
  destroy(): void;
}

const pair = <T>(make: (parity: number) => T): Pair<T> => [make(0), make(1)];

export function createResources(device: GPUDevice, plan: Plan, kernels: Kernels): Resources {
  const STORAGE = GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST | GPUBufferUsage.COPY_SRC;
  const UNIFORM = GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST;
  const owned: { destroy(): void }[] = [];
  const buffer = (label: string, bytes: number, usage = STORAGE) => {
    const b = device.createBuffer({ label, size: Math.max(16, Math.ceil(bytes / 16) * 16), usage });
    owned.push(b);
    return b;
  };
  const R = plan.replicas;
  const texture = (label: string, width: number, height: number) => {
    const t = device.createTexture({
      label,
      size: [width, height, R],
      format: "rgba32float",
      usage: GPUTextureUsage.TEXTURE_BINDING | GPUTextureUsage.STORAGE_BINDING |
        GPUTextureUsage.COPY_DST | GPUTextureUsage.COPY_SRC,
    });
    owned.push(t);
    return t;
  };

  const { strides } = plan;
  const used = kernels.family.bindings;
  const pBytes = R * strides.params * 16;
  const params = pair((p) => buffer(`params.${p}`, pBytes));
  const weights = plan.tensors.weights.map((w) =>
    pair((p) => texture(`${w.tensor.name}.${p}`, w.width, w.height))
  );
  const noWeight = pair((p) => texture(`no weight.${p}`, 1, 1)); // for ops without one
  // Activations and gradients are also read through uniform windows that may start at any
  // region: pad each buffer so that every window lies inside it.
  const windows = used.includes("InWindow") || used.includes("GinWindow");
  const WINDOWED = windows ? STORAGE | GPUBufferUsage.UNIFORM : STORAGE;
  const pad = windows ? C.WINDOW * 16 : 0;
  const activations = pair((p) => buffer(`activations.${p}`, R * strides.act * 16 + pad, WINDOWED));
  const gradients = pair((p) => buffer(`gradients.${p}`, R * strides.grad * 16 + pad, WINDOWED));
  const data = buffer("data", plan.dataInts * 4);
  const host = buffer("host", R * strides.host * 4);
  const steps = buffer("steps", plan.stepSlots * UNIFORM_STRIDE, UNIFORM);
  const replicas = buffer("replicas", plan.stepSlots * REPLICAS_BYTES, UNIFORM);
  const ops = buffer("ops", plan.ops.length * UNIFORM_STRIDE, UNIFORM);
  plan.ops.forEach((v, i) => device.queue.writeBuffer(ops, i * UNIFORM_STRIDE, OP.pack(v)));

  const stepGroup = device.createBindGroup({
    label: "step",
    layout: kernels.stepLayout,
    entries: [
      { binding: 0, resource: { buffer: steps, size: STEP.bytes } },
      { binding: 1, resource: { buffer: replicas, size: REPLICAS_BYTES } },
    ],
  });
  const uniform = (i: number) => ({ buffer: ops, offset: i * UNIFORM_STRIDE, size: OP.bytes });
  const window = (b: GPUBuffer, quad: number) => ({
    buffer: b,
    offset: quad * 16,
    size: C.WINDOW * 16,
  });
  const L = plan.layers.length;
  const groups = plan.ops.map((f, i) => {
    // Layer l = i - 1 writes parity l % 2 and reads parity (l + 1) % 2; the loss writes the
    // output layer's gradient, so its gradient buffers swap roles.
    const loss = i === L + 1;
    const layer = loss ? L - 1 : i - 1;
    const out = i === 0 ? 1 : layer % 2;
    const inp = 1 - out;
    const [gin, gout] = loss ? [inp, out] : [out, inp];
    const weight = i > 0 && !loss ? weights[i - 1] : noWeight;
    return pair((parity) => {
      const resource: Record<BindingName, GPUBindingResource> = {
        op: uniform(i),
        prev: uniform(Math.max(i - 1, 0)),
        P: { buffer: params[parity] },
        Pn: { buffer: params[1 - parity] },
        In: { buffer: activations[inp] },
        Out: { buffer: activations[out] },
        Gin: { buffer: gradients[gin] },
        Gout: { buffer: gradients[gout] },
        D: { buffer: data },
        Host: { buffer: host },
        InWindow: window(activations[inp], i > 0 && !loss ? f.x : 0),
        // The embedding reads its gradient, dx, through this window too.
        GinWindow: window(gradients[gin], loss ? 0 : f.dh),
        W: weight[parity].createView({ dimension: "2d-array" }),
        Wn: weight[1 - parity].createView({ dimension: "2d-array" }),
      };
      return device.createBindGroup({
        label: `op ${i} parity ${parity}`,
        layout: kernels.opLayout,
        entries: BINDINGS.flatMap(([name], binding) =>
          used.includes(name) ? [{ binding, resource: resource[name] }] : []
        ),
      });
    });
  });
  return {
    params,
    weights,
    activations,
    gradients,
    data,
    host,
    steps,
    replicas,
    stepGroup,
    groups,
    destroy: () => owned.forEach((o) => o.destroy()),
  };
}
