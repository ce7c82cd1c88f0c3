/**
 * Generating names from a trained model: the CPU reference's forward pass in evaluation mode
 * (running BatchNorm statistics), one character at a time for a batch of names at once.
 * Generating is tiny work next to training, and the CPU gives the same names for the same
 * seed on every machine.
 */

import { CpuModel } from "./cpu/model.ts";
import type { Vocab } from "./data.ts";
import { MAX_WORD_CHARS } from "./data.ts";
import type { ModelConfig } from "./model.ts";
import { Rng } from "./rng.ts";

export interface SampleOptions {
  readonly count: number;
  readonly seed: number;
  /** Logits are divided by it: < 1 is more conservative, > 1 more adventurous. */
  readonly temperature?: number;
  /** Sample only among the k most likely characters (0 or undefined: all). */
  readonly topK?: number;
  /** Every name starts with these characters (all in the vocabulary). */
  readonly prefix?: string;
  /** Longest name generated, in characters. */
  readonly maxLength?: number;
}

/** Names are generated this many at a time (one forward pass per character for the batch). */
export const SAMPLE_BATCH = 1000;

/**
 * The generator of name `i`: each name draws from its own stream, derived from the seed and its
 * index, so that the same seed gives the same first names whatever the count and the batching.
 */
function nameRng(seed: number, i: number): Rng {
  // A multiplicative hash of (seed, i) picks the stream; Rng expands it with SplitMix32.
  return new Rng((Math.imul(seed ^ 0x9e3779b9, 0x85ebca6b) + Math.imul(i, 0xc2b2ae35)) >>> 0);
}

/** Names in batches of up to SAMPLE_BATCH, as they are generated (see nameRng). */
export function* generateNames(
  config: ModelConfig,
  params: Float32Array,
  buffers: Float32Array,
  vocab: Vocab,
  opts: SampleOptions,
): Generator<string[]> {
  const { temperature = 1, topK = 0, prefix = "", maxLength = MAX_WORD_CHARS } = opts;
  const model = new CpuModel(config, params, buffers);
  const T = config.blockSize;
  const V = config.vocabSize;
  const start = vocab.encode(prefix);
  const probs = new Float64Array(V);
  for (let first = 0; first < opts.count; first += SAMPLE_BATCH) {
    const count = Math.min(SAMPLE_BATCH, opts.count - first);
    const rngs = Array.from({ length: count }, (_, b) => nameRng(opts.seed, first + b));
    const ctx = new Int32Array(count * T);
    const out: number[][] = Array.from({ length: count }, () => []);
    const push = (b: number, id: number) => {
      ctx.copyWithin(b * T, b * T + 1, (b + 1) * T);
      ctx[(b + 1) * T - 1] = id;
      out[b].push(id);
    };
    for (let b = 0; b < count; b++) for (const id of start) push(b, id);
    const done = new Uint8Array(count);
    for (let len = start.length; len < maxLength && done.includes(0); len++) {
      const logits = model.logits(ctx, "eval");
      for (let b = 0; b < count; b++) {
        if (done[b]) continue;
        const row = logits.slice(b * V, (b + 1) * V);
        // A name is never empty: its first character may not be the end token.
        if (out[b].length === 0) row[0] = -Infinity;
        const id = draw(row, probs, temperature, topK, rngs[b]);
        if (id === 0) done[b] = 1;
        else push(b, id);
      }
    }
    yield out.map((ids) => vocab.decode(ids));
  }
}

/** `opts.count` names from a trained model (see generateNames). */
export function sampleNames(
  config: ModelConfig,
  params: Float32Array,
  buffers: Float32Array,
  vocab: Vocab,
  opts: SampleOptions,
): string[] {
  return [...generateNames(config, params, buffers, vocab, opts)].flat();
}

/**
 * softmax(logits / temperature) over the k most likely tokens (all when k is 0 or >= V), into
 * `probs`, unnormalized: each kept token's exp((logit - max) / temperature), 0 for the others.
 * Returns their sum.
 */
export function distribution(
  logits: ArrayLike<number>,
  probs: Float64Array,
  temperature: number,
  topK: number,
): number {
  const V = logits.length;
  let cutoff = -Infinity;
  if (topK > 0 && topK < V) cutoff = Array.from(logits).sort((a, b) => b - a)[topK - 1];
  let max = -Infinity;
  for (let v = 0; v < V; v++) if (logits[v] >= cutoff) max = Math.max(max, logits[v]);
  let sum = 0;
  for (let v = 0; v < V; v++) {
    probs[v] = logits[v] >= cutoff ? Math.exp((logits[v] - max) / temperature) : 0;
    sum += probs[v];
  }
  return sum;
}

/** One token from softmax(logits / temperature), restricted to the top k. */
function draw(
  logits: ArrayLike<number>,
  probs: Float64Array,
  temperature: number,
  topK: number,
  rng: Rng,
): number {
  const V = logits.length;
  let u = rng.uniform() * distribution(logits, probs, temperature, topK);
  for (let v = 0; v < V; v++) {
    u -= probs[v];
    if (u < 0) return v;
  }
  // Rounding left u a hair above 0: take the last token that had any probability.
  for (let v = V - 1; v >= 0; v--) if (probs[v] > 0) return v;
  return 0;
}
