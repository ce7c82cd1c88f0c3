/**
 * The interface between the host and the kernels, declared once: every uniform struct (its
 * fields, their types and order) and every constant both sides use. The WGSL declarations are
 * generated from these tables (`wgslPrelude`) and prepended to each kernel when it is compiled
 * (src/gpu/shaders.ts), and the host packs its uniforms with the same tables (`Struct.pack`),
 * so the two cannot drift apart. tests/gpu_abi_test.ts proves it with a probe kernel that
 * copies every field it receives back to the host.
 *
 * Field names are the WGSL names (snake_case), on the host too: one vocabulary.
 */

import { type Activation, ACTIVATIONS } from "../layers.ts";

/** The scalar types a uniform field may have: 4 bytes each, so a struct is a flat array. */
export type Scalar = "u32" | "f32";

/** One field: its name, WGSL type and a comment that the generated WGSL carries. */
export type Field = readonly [name: string, type: Scalar, doc: string];

/** The names of a field table's fields. */
export type FieldNames<F extends readonly Field[]> = F[number][0];

/** Values for every field of a struct, by name. */
export type Values<F extends readonly Field[]> = { [K in FieldNames<F>]: number };

/** A uniform struct of 4-byte scalars, packed in declaration order. */
export class Struct<F extends readonly Field[]> {
  /** sizeof(struct) in WGSL: 4 bytes a field, rounded up to the struct's 16-byte alignment. */
  readonly bytes: number;

  constructor(readonly name: string, readonly doc: string, readonly fields: F) {
    this.bytes = Math.ceil((4 * fields.length) / 16) * 16;
  }

  /** The field's index (its offset is 4 times that). */
  index(field: FieldNames<F>): number {
    return this.fields.findIndex(([name]) => name === field);
  }

  /** The uniform's bytes: each field in order, little-endian, as WGSL lays it out. */
  pack(values: Values<F>): ArrayBuffer {
    const buf = new ArrayBuffer(this.bytes);
    const dv = new DataView(buf);
    this.fields.forEach(([name, type], i) => {
      const v = (values as Record<string, number>)[name];
      if (type === "f32") dv.setFloat32(4 * i, v, true);
      else dv.setUint32(4 * i, v, true);
    });
    return buf;
  }

  /** The values back out of packed bytes (for the probe test). */
  unpack(bytes: ArrayBuffer): Values<F> {
    const dv = new DataView(bytes);
    return Object.fromEntries(
      this.fields.map(([name, type], i) => [
        name,
        type === "f32" ? dv.getFloat32(4 * i, true) : dv.getUint32(4 * i, true),
      ]),
    ) as Values<F>;
  }

  /** The WGSL declaration; `align16` aligns it to 16 bytes, as elements of uniform arrays must be. */
  wgsl(align16 = false): string {
    const width = Math.max(...this.fields.map(([n, t]) => n.length + t.length + 3));
    const lines = this.fields.map(([name, type, doc], i) =>
      `  ${`${align16 && i === 0 ? "@align(16) " : ""}${name}: ${type},`.padEnd(width)} // ${doc}`
    );
    return `// ${this.doc}\nstruct ${this.name} {\n${lines.join("\n")}\n}\n`;
  }
}

/**
 * A pass: one training step, or one evaluation chunk. Bound at a dynamic offset of one buffer,
 * so a whole chunk of steps is encoded against it.
 *
 * Every pass runs each of a group's replicas (independent models of one shape, src/gpu/plan.ts)
 * in the same dispatches, replica r in the workgroups of z = r. Every buffer holds the replicas
 * one after another: replica r's part of one starts r times its `rep_*` stride in. The offsets
 * below and in Op are replica 0's.
 */
export const STEP = new Struct(
  "Step",
  "One pass over `rows` examples (a step, or a chunk of one split), for every replica.",
  [
    ["rows", "u32", "examples in this pass: the batch, or one evaluation chunk"],
    ["data", "u32", "index in D of this pass's contexts [rows][block], then its targets [rows]"],
    ["loss", "u32", "index in Host where this pass writes its loss (or partial losses)"],
    ["mode", "u32", "MODE_TRAIN or MODE_EVAL"],
    ["diag", "u32", "DIAG kernels: index in Host of this step's moments, or NONE"],
    ["snap", "u32", "DIAG kernels: index in Host of this step's snapshot, or NONE"],
    ["rep_p", "u32", "vec4 between replicas in P and Pn"],
    ["rep_act", "u32", "vec4 between replicas in In and Out"],
    ["rep_grad", "u32", "vec4 between replicas in Gin and Gout"],
    ["rep_data", "u32", "ints between replicas in D (0: they read the same examples)"],
    ["rep_host", "u32", "floats between replicas in Host"],
  ] as const,
);

/**
 * A replica's hyper-parameters at one step: what may differ between the replicas of a group
 * (the rest of their configuration is one shape). An array of MAX_REPLICAS of these is bound
 * beside each Step, at the same slot.
 */
export const REPLICA = new Struct(
  "Replica",
  "One replica's hyper-parameters at this step.",
  [
    ["lr", "f32", "learning rate"],
    ["momentum", "f32", "BatchNorm running-statistics momentum"],
  ] as const,
);

/**
 * One op: the embedding, a layer, or the loss, as the kernels see it. Offsets are in vec4 of
 * the buffer named; unused fields are 0. A layer's weight is the texture W, not an offset.
 */
export const OP = new Struct(
  "Op",
  "One layer (or the embedding, or the loss), as the kernels see it.",
  [
    ["index", "u32", "layer number"],
    ["flags", "u32", "HAS_BIAS | HAS_BN | an activation's HAS_TANH, HAS_RELU, ... | PREV_APART"],
    ["n_in", "u32", "input features"],
    ["n_out", "u32", "output features"],
    ["in_q", "u32", "input row length in vec4 (n_in rounded up, / 4)"],
    ["out_q", "u32", "output row length in vec4"],
    ["x", "u32", "In: input [rows][in_q]"],
    ["h", "u32", "Out: linear output before BatchNorm [rows][out_q]"],
    ["t", "u32", "Out: layer output [rows][out_q] (after BatchNorm and tanh, if any)"],
    ["dh", "u32", "Gin: gradient of the loss w.r.t. h [rows][out_q]"],
    ["stats", "u32", "Out: batch mean [out_q], then unbiased batch variance [out_q]"],
    ["w", "u32", "P: the embedding table [vocab][embd_q] (the embedding op only)"],
    ["bias", "u32", "P: [out_q]"],
    ["gamma", "u32", "P: [out_q]"],
    ["beta", "u32", "P: [out_q]"],
    ["run_mean", "u32", "P: [out_q]"],
    ["run_var", "u32", "P: [out_q]"],
    ["dw_groups", "u32", "linear_backward: workgroups computing dW (the rest compute dx)"],
    ["eps", "f32", "BatchNorm epsilon"],
    ["positions", "u32", "rows per example at this op (its row count is step.rows times this)"],
    ["group", "u32", "embedding: tokens joined in each output row (its FlattenConsecutive)"],
    ["embd", "u32", "embedding: dimensions per token"],
    ["embd_q", "u32", "embedding: a table row's length in vec4 (embd rounded up, / 4)"],
    ["block", "u32", "tokens per example: its context (where D's targets start)"],
    ["vocab", "u32", "embedding: table rows"],
    ["diag", "u32", "DIAG: offset of this op's partial moments in a step's moments"],
    ["snap_w", "u32", "DIAG: offset of this op's weight gradient [4 in_q][4 out_q] in a snapshot"],
    [
      "snap_dt",
      "u32",
      "DIAG: offset of the gradient w.r.t. this op's output t [rows][4 out_q], or NONE",
    ],
  ] as const,
);

export type StepValues = Values<typeof STEP.fields>;
/** A Step uniform's values: the rows and mode, and whichever others the pass uses. */
export type StepFields = Partial<StepValues> & Pick<StepValues, "rows" | "mode">;
export type OpValues = Values<typeof OP.fields>;
export type ReplicaValues = Values<typeof REPLICA.fields>;

/** A constant shared by the host and the kernels (all u32 in WGSL). */
export interface Constant {
  readonly value: number;
  readonly doc: string;
}

export const constant = (value: number, doc: string): Constant => ({ value, doc });

const ACTIVATION_NAMES = Object.keys(ACTIVATIONS) as Activation[];

/** Each activation's Op flag (shaders/activation.wgsl reads them): bits from 4 up, in order. */
export const ACTIVATION_FLAGS = Object.fromEntries(
  ACTIVATION_NAMES.map((a, i) => [a, 4 << i]),
) as Readonly<Record<Activation, number>>;

const activationConstants = Object.fromEntries(
  ACTIVATION_NAMES.map((a) => [
    `HAS_${a.toUpperCase()}`,
    constant(ACTIVATION_FLAGS[a], `Op.flags: the layer ends in ${ACTIVATIONS[a]}`),
  ]),
) as { readonly [A in Activation as `HAS_${Uppercase<A>}`]: Constant };

/** The constants every kernel sees. */
export const CONSTANTS = {
  MODE_TRAIN: constant(0, "Step.mode: a training step (batch statistics, SGD)"),
  MODE_EVAL: constant(1, "Step.mode: evaluation (running statistics, no gradients)"),
  NONE: constant(0xffffffff, "an absent index"),
  HAS_BIAS: constant(1, "Op.flags: the layer adds a bias"),
  HAS_BN: constant(2, "Op.flags: the layer has a BatchNorm"),
  ...activationConstants,
  HAS_ACT: constant(
    Object.values(ACTIVATION_FLAGS).reduce((a, b) => a | b),
    "Op.flags: any activation",
  ),
  PREV_APART: constant(
    4 << ACTIVATION_NAMES.length,
    "Op.flags: the previous layer's activation and BatchNorm backward run in a dispatch of " +
      "their own (a FlattenConsecutive between the two changes the rows)",
  ),
  MAX_REPLICAS: constant(
    256,
    "replicas of one group at most: WebGPU's default maxTextureArrayLayers (a layer each)",
  ),
  WINDOW: constant(
    4096,
    "vec4 in a uniform window: 64 KiB, the most a uniform binding may hold",
  ),
} as const;

export type ConstantName = keyof typeof CONSTANTS;

/** A constant's value, for the host. */
export const C = Object.fromEntries(
  Object.entries(CONSTANTS).map(([k, v]) => [k, v.value]),
) as { readonly [K in ConstantName]: number };

/** Generated WGSL for a set of constants. */
export function wgslConstants(constants: Record<string, Constant>): string {
  return Object.entries(constants)
    .map(([name, { value, doc }]) => `const ${name} = ${value >>> 0}u; // ${doc}\n`)
    .join("");
}

/** How a binding is bound: the WGSL address space and access, and the host's layout entry. */
export type BindingKind = "uniform" | "read" | "read_write" | "texture" | "storage_texture";

/** One binding of group 1: WGSL name, kind, WGSL type, and what it holds. */
export type Binding = readonly [name: string, kind: BindingKind, type: string, doc: string];

/**
 * Group 1, bound per op (and per parity of the parameter copies): binding i is BINDINGS[i].
 * Group 0 is the Step uniform alone, at a dynamic offset. See shaders/common.wgsl for the
 * memory model behind In/Out and Gin/Gout.
 */
export const BINDINGS = [
  ["op", "uniform", "Op", "this op"],
  ["prev", "uniform", "Op", "the op feeding this one (the embedding for layer 0)"],
  ["P", "read", "array<vec4f>", "parameters and running statistics before the step"],
  ["Pn", "read_write", "array<vec4f>", "parameters and running statistics after the step"],
  ["In", "read", "array<vec4f>", "activations this op reads (the other parity)"],
  ["Out", "read_write", "array<vec4f>", "activations this op writes"],
  ["Gin", "read", "array<vec4f>", "gradients this op reads"],
  ["Gout", "read_write", "array<vec4f>", "gradients this op writes"],
  ["D", "read", "array<i32>", "token ids: contexts [rows][block], then targets [rows]"],
  ["Host", "read_write", "array<f32>", "what the host reads back: losses, diagnostics"],
  ["InWindow", "uniform", "array<vec4f, WINDOW>", "In from op.x, through a uniform window"],
  ["GinWindow", "uniform", "array<vec4f, WINDOW>", "Gin from op.dh, through a uniform window"],
  [
    "W",
    "texture",
    "texture_2d_array<f32>",
    "the layer's weight, a layer per replica: row k, texel q = W[k][4q..4q+3]",
  ],
  [
    "Wn",
    "storage_texture",
    "texture_storage_2d_array<rgba32float, write>",
    "the weight after the step",
  ],
] as const satisfies readonly Binding[];

export type BindingName = (typeof BINDINGS)[number][0];

function wgslBindings(): string {
  const space: Record<BindingKind, string> = {
    uniform: "var<uniform>",
    read: "var<storage, read>",
    read_write: "var<storage, read_write>",
    texture: "var",
    storage_texture: "var",
  };
  return [
    "@group(0) @binding(0) var<uniform> step: Step;\n",
    "@group(0) @binding(1) var<uniform> replicas: array<Replica, MAX_REPLICAS>;\n",
    ...BINDINGS.map(([name, kind, type, doc], i) =>
      `@group(1) @binding(${i}) ${space[kind]} ${name}: ${type}; // ${doc}\n`
    ),
  ].join("");
}

/**
 * The layout entries of group 1 for the bindings a kernel family uses (each keeps its index in
 * BINDINGS), for the host: a family's bind groups hold nothing its kernels do not read.
 */
export function bindGroupLayoutEntries(
  visibility: number,
  used: readonly BindingName[],
): GPUBindGroupLayoutEntry[] {
  const type: Record<BindingKind, Omit<GPUBindGroupLayoutEntry, "binding" | "visibility">> = {
    uniform: { buffer: { type: "uniform" } },
    read: { buffer: { type: "read-only-storage" } },
    read_write: { buffer: { type: "storage" } },
    texture: { texture: { sampleType: "unfilterable-float", viewDimension: "2d-array" } },
    storage_texture: {
      storageTexture: { access: "write-only", format: "rgba32float", viewDimension: "2d-array" },
    },
  };
  return BINDINGS.flatMap(([name, kind], binding) =>
    used.includes(name) ? [{ binding, visibility, ...type[kind] }] : []
  );
}

/** Every binding but the uniform windows (which only the software family reads). */
export const BINDINGS_WITHOUT_WINDOWS: readonly BindingName[] = BINDINGS.map(([n]) => n)
  .filter((n) => !n.endsWith("Window"));
/** Every binding. */
export const ALL_BINDINGS: readonly BindingName[] = BINDINGS.map(([n]) => n);

/** The declarations every kernel is compiled with, given its family's own constants. */
export function wgslPrelude(familyConstants: Record<string, Constant>): string {
  return [
    "// Generated from src/gpu/abi.ts: edit the tables there, not this text.",
    STEP.wgsl(),
    REPLICA.wgsl(true),
    OP.wgsl(),
    wgslConstants(CONSTANTS),
    wgslConstants(familyConstants),
    wgslBindings(),
  ].join("\n");
}

/** Host-side byte sizes, derived. */
export const STEP_BYTES = STEP.bytes;
/** One step slot of the replicas' array: every replica's hyper-parameters. */
export const REPLICAS_BYTES = C.MAX_REPLICAS * REPLICA.bytes;
export const OP_BYTES = OP.bytes;
/** Uniform offsets are 256-aligned: the largest minUniformBufferOffsetAlignment allowed. */
export const UNIFORM_STRIDE = 256;
