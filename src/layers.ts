/**
 * The network as makemore writes it: a list of layers, run one after the other.
 *
 *   Embedding(24) FlattenConsecutive(2) Linear(128, bias=False) BatchNorm1d Tanh ... Linear
 *
 * A batch flows through as a [rows][width] matrix. The embedding gives each example's
 * `blockSize` tokens a row of `dim` each; FlattenConsecutive(n) joins n consecutive rows of an
 * example into one (rows / n, width * n: in row-major memory, nothing moves); Linear, BatchNorm1d
 * (over every dimension but the last, as makemore part 5's) and the activations act on the rows.
 * The last layer is a Linear to the vocabulary, with a BatchNorm1d after it at most, one row per
 * example: the logits.
 *
 * `blocksOf` reads a list as what the kernels run: the embedding (joining its first
 * FlattenConsecutive, if any), then blocks of Linear [BatchNorm1d] [activation], each with the
 * FlattenConsecutive before it. Every other shape is refused with one line.
 */

/** One layer. `out: "vocab"` is the number of characters, known once the data is read. */
export type Layer =
  | { readonly kind: "embedding"; readonly dim: number }
  | { readonly kind: "flatten"; readonly n: number }
  | { readonly kind: "linear"; readonly out: number | "vocab"; readonly bias: boolean }
  | { readonly kind: "batchnorm" }
  | { readonly kind: Activation };

/**
 * The activations a block may end in, as the lectures write them: the one list every other
 * table of activations (the CPU ops, the kernels' Op flags, the bounds) is keyed by.
 */
export const ACTIVATIONS = { tanh: "Tanh", relu: "ReLU" } as const;
export type Activation = keyof typeof ACTIVATIONS;
const isActivation = (name: string): name is Activation => Object.hasOwn(ACTIVATIONS, name);
/** "Tanh|ReLU", for messages. */
const ACTIVATION_LIST = Object.values(ACTIVATIONS).join("|");

/** A Linear [BatchNorm1d] [activation] block of the kernels, and the flatten before it. */
export interface Block {
  /** FlattenConsecutive(n) before it (1: none). */
  readonly flatten: number;
  readonly nIn: number;
  readonly nOut: number;
  readonly bias: boolean;
  readonly bn: boolean;
  readonly act: Activation | null;
  /** Rows per example at this block (the positions of the context it still has apart). */
  readonly positions: number;
}

export interface Blocks {
  /** The embedding's width per token, how many tokens its output rows join, and per example. */
  readonly embedding: { readonly dim: number; readonly group: number; readonly positions: number };
  /** The hidden blocks, then the output block (whose nOut is the vocabulary). */
  readonly blocks: readonly Block[];
}

/** Whether `v` (read from a checkpoint, say) is a list of layers. */
export function isLayers(v: unknown): v is Layer[] {
  const size = (x: unknown) => typeof x === "number" && Number.isInteger(x) && x >= 1;
  return Array.isArray(v) && v.every((l) => {
    if (typeof l !== "object" || l === null) return false;
    const keys = Object.keys(l).sort().join();
    switch (l.kind) {
      case "embedding":
        return keys === "dim,kind" && size(l.dim);
      case "flatten":
        return keys === "kind,n" && size(l.n);
      case "linear":
        return keys === "bias,kind,out" && (l.out === "vocab" || size(l.out)) &&
          typeof l.bias === "boolean";
      case "batchnorm":
      case "tanh":
      case "relu":
        return keys === "kind";
      default:
        return false;
    }
  });
}

/** A layer as it is written: "Linear(128, bias=False)". */
export function layerText(l: Layer): string {
  switch (l.kind) {
    case "embedding":
      return `Embedding(${l.dim})`;
    case "flatten":
      return `FlattenConsecutive(${l.n})`;
    case "linear":
      return `Linear(${l.out === "vocab" ? "vocab" : l.out}${l.bias ? "" : ", bias=False"})`;
    case "batchnorm":
      return "BatchNorm1d";
    default:
      return ACTIVATIONS[l.kind];
  }
}

/** A list as it is written: the layers separated by spaces. */
export const networkText = (layers: readonly Layer[]): string => layers.map(layerText).join(" ");

/**
 * Reads a list as `networkText` writes it (names case-insensitive; "Flatten" for
 * FlattenConsecutive; "Linear" with no size, or "vocab", for the output), or says in one line
 * what is wrong with it.
 */
export function parseNetwork(text: string): Layer[] | string {
  const items = text.match(/[A-Za-z0-9_]+\s*(\([^)]*\))?/g) ?? [];
  const rest = text.replace(/[A-Za-z0-9_]+\s*(\([^)]*\))?/g, "").replace(/[\s,>-]/g, "");
  if (rest) return `unexpected '${rest[0]}' in the layers`;
  const layers: Layer[] = [];
  for (const item of items) {
    const m = /^([A-Za-z0-9_]+)\s*(?:\(([^)]*)\))?$/.exec(item)!;
    const name = m[1].toLowerCase();
    const args = m[2] === undefined ? [] : m[2].split(",").map((a) => a.trim()).filter(Boolean);
    const count = (a: string | undefined) => (a !== undefined && /^\d+$/.test(a) ? Number(a) : NaN);
    const bad = `${item}: `;
    switch (name) {
      case "embedding": {
        const dim = count(args[0]);
        if (args.length !== 1 || !(dim >= 1)) return `${bad}Embedding(dim) takes one size`;
        layers.push({ kind: "embedding", dim });
        break;
      }
      case "flatten":
      case "flattenconsecutive": {
        const n = count(args[0]);
        if (args.length !== 1 || !(n >= 1)) return `${bad}FlattenConsecutive(n) takes one count`;
        layers.push({ kind: "flatten", n });
        break;
      }
      case "linear": {
        let bias = true;
        const sizes = args.filter((a) => {
          const b = /^bias\s*=\s*(true|false)$/i.exec(a);
          if (b) bias = b[1].toLowerCase() === "true";
          return !b;
        });
        if (sizes.length > 1) return `${bad}Linear(out, bias=False) takes one size`;
        const out = sizes.length === 0 || sizes[0].toLowerCase() === "vocab"
          ? "vocab"
          : count(sizes[0]);
        if (out !== "vocab" && !(out >= 1)) return `${bad}not a size`;
        layers.push({ kind: "linear", out, bias });
        break;
      }
      case "batchnorm":
      case "batchnorm1d":
        if (args.length) return `${bad}BatchNorm1d takes no arguments`;
        layers.push({ kind: "batchnorm" });
        break;
      default:
        if (!isActivation(name)) {
          return `unknown layer '${m[1]}' (Embedding, FlattenConsecutive, Linear, BatchNorm1d, ` +
            `${Object.values(ACTIVATIONS).join(", ")})`;
        }
        if (args.length) return `${bad}an activation takes no arguments`;
        layers.push({ kind: name });
    }
  }
  return layers;
}

/**
 * What the kernels run (see the module comment) for a context of `blockSize` tokens and
 * `vocab` characters, or what makes the list one they cannot: one line.
 */
export function blocksOf(
  layers: readonly Layer[],
  blockSize: number,
  vocab: number,
): Blocks | string {
  const [first, ...rest] = layers;
  if (first?.kind !== "embedding") return "the layers must start with an Embedding";
  let positions = blockSize;
  let width = first.dim;
  let group = 1;
  let i = 0;
  // FlattenConsecutive right after the embedding: its output rows join that many tokens.
  while (rest[i]?.kind === "flatten") {
    const n = (rest[i] as { n: number }).n;
    if (positions % n) {
      return `FlattenConsecutive(${n}) of ${positions} positions leaves a remainder`;
    }
    positions /= n;
    width *= n;
    group *= n;
    i++;
  }
  const blocks: Block[] = [];
  while (i < rest.length) {
    let flatten = 1;
    while (rest[i]?.kind === "flatten") {
      const n = (rest[i] as { n: number }).n;
      if (positions % n) {
        return `FlattenConsecutive(${n}) of ${positions} positions leaves a remainder`;
      }
      if (width % 4) {
        return `FlattenConsecutive(${n}) after a width of ${width}: a FlattenConsecutive that ` +
          "is not right after the Embedding needs a width that is a multiple of 4";
      }
      positions /= n;
      width *= n;
      flatten *= n;
      i++;
    }
    const linear = rest[i];
    if (linear?.kind !== "linear") {
      return `${linear ? layerText(linear) : "the end"} where a Linear was expected: the ` +
        `layers after the Embedding are Linear [BatchNorm1d] [${ACTIVATION_LIST}] blocks`;
    }
    i++;
    const bn = rest[i]?.kind === "batchnorm";
    if (bn) i++;
    const a = rest[i]?.kind;
    const act = a && isActivation(a) ? a : null;
    if (act) i++;
    const nOut = linear.out === "vocab" ? vocab : linear.out;
    blocks.push({ flatten, nIn: width, nOut, bias: linear.bias, bn, act, positions });
    width = nOut;
  }
  const out = blocks.at(-1);
  if (!out) return "the layers need a Linear after the Embedding";
  if (out.act) return "the last layer is the output Linear (or its BatchNorm1d), no activation";
  const last = layers.findLast((l) => l.kind === "linear") as { out: number | "vocab" };
  // (A vocabulary not known yet, NaN, is checked when the data is read.)
  if (last.out !== "vocab" && last.out !== vocab && !Number.isNaN(vocab)) {
    return `the output Linear gives ${last.out} features; it must give the vocabulary ` +
      `(write Linear or Linear(vocab))`;
  }
  if (out.positions !== 1) {
    return `the output has ${out.positions} positions per example: FlattenConsecutive must ` +
      `join all ${blockSize} (their counts multiply to ${blockSize})`;
  }
  return { embedding: { dim: first.dim, group, positions: blockSize / group }, blocks };
}

/** makemore part 3's MLP: the embedding of the whole context, then `hidden` blocks. */
export function mlp(o: {
  readonly nEmbd: number;
  readonly blockSize: number;
  readonly nHidden: number;
  readonly nLayers: number;
  readonly batchNorm: boolean;
  readonly outputBias: boolean;
  readonly outputBatchNorm: boolean;
}): Layer[] {
  const hidden: Layer[] = [
    { kind: "linear", out: o.nHidden, bias: !o.batchNorm },
    ...(o.batchNorm ? [{ kind: "batchnorm" } as const] : []),
    { kind: "tanh" },
  ];
  return [
    { kind: "embedding", dim: o.nEmbd },
    { kind: "flatten", n: o.blockSize },
    ...Array.from({ length: o.nLayers }, () => hidden).flat(),
    { kind: "linear", out: "vocab", bias: o.outputBias },
    ...(o.outputBatchNorm ? [{ kind: "batchnorm" } as const] : []),
  ];
}

/** makemore part 5's WaveNet: the context joined two by two, `depth` times. */
export function wavenet(
  o: { readonly nEmbd: number; readonly nHidden: number; readonly depth: number },
): Layer[] {
  const block: Layer[] = [
    { kind: "flatten", n: 2 },
    { kind: "linear", out: o.nHidden, bias: false },
    { kind: "batchnorm" },
    { kind: "tanh" },
  ];
  return [
    { kind: "embedding", dim: o.nEmbd },
    ...Array.from({ length: o.depth }, () => block).flat(),
    { kind: "linear", out: "vocab", bias: true },
  ];
}

/** What the MLP's sizes say of a list (the config's summary fields). */
export function summary(layers: readonly Layer[]): {
  nEmbd: number;
  nHidden: number;
  nLayers: number;
  batchNorm: boolean;
  outputBias: boolean;
  outputBatchNorm: boolean;
} {
  const linears = layers.flatMap((l, i) => (l.kind === "linear" ? [i] : []));
  const out = linears.at(-1)!;
  const hidden = linears.slice(0, -1).map((i) => layers[i] as { out: number });
  return {
    nEmbd: (layers[0] as { dim: number }).dim,
    nHidden: hidden[0]?.out ?? 1,
    nLayers: hidden.length,
    batchNorm: hidden.length > 0 &&
      linears.slice(0, -1).every((i) => layers[i + 1]?.kind === "batchnorm"),
    outputBias: (layers[out] as { bias: boolean }).bias,
    outputBatchNorm: layers[out + 1]?.kind === "batchnorm",
  };
}

/** The list with the embedding `dim` wide. */
export const withEmbedding = (layers: readonly Layer[], dim: number): Layer[] =>
  layers.map((l) => (l.kind === "embedding" ? { ...l, dim } : l));

/** The list with every hidden Linear `out` wide. */
export function withHidden(layers: readonly Layer[], out: number): Layer[] {
  return layers.map((l) => (l.kind === "linear" && l.out !== "vocab" ? { ...l, out } : l));
}

/** The list without its BatchNorms, each Linear with a bias instead (makemore part 3's deep net). */
export function withoutBatchNorm(layers: readonly Layer[]): Layer[] {
  return layers.flatMap((l): Layer[] =>
    l.kind === "batchnorm" ? [] : l.kind === "linear" ? [{ ...l, bias: true }] : [l]
  );
}
