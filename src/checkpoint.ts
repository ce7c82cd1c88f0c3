/**
 * Checkpoints in the safetensors format (https://github.com/huggingface/safetensors): an 8-byte
 * little-endian header length, a JSON header naming each tensor's dtype, shape and byte range,
 * then the raw little-endian data. Any safetensors reader can load one; the model config, the
 * vocabulary and the training state travel as strings in the header's `__metadata__`.
 *
 * Tensors (all F32): the parameters under their layout names (src/model.ts), weights
 * [fan_in, fan_out] so that a row of inputs multiplies straight into them (x @ W, as makemore
 * writes it, the transpose of torch.nn.Linear.weight), and the BatchNorm running statistics.
 */

import { UserError } from "./errors.ts";
import { readUserFile, writeFileAtomic } from "./files.ts";
import { type ModelConfig, modelLayout, type TrainConfig } from "./model.ts";
import type { RngState } from "./rng.ts";

export const FORMAT = "makemore-webgpu";
export const FORMAT_VERSION = "1";

/** Where training stands, for --resume. */
export interface TrainingState {
  /** Steps done. */
  readonly step: number;
  /** The minibatch generator's state after drawing the batches of those steps. */
  readonly rng: RngState;
  readonly train: TrainConfig;
  readonly seed: number;
  /** Wall-clock seconds spent training so far. */
  readonly seconds: number;
  /** The data file the run trained on, and its sha256 (the split depends on every byte). */
  readonly data: { readonly path: string; readonly sha256: string };
  /** Whether the running statistics were recalibrated over the training split. */
  readonly calibrated: boolean;
  /** Losses of the steps since the last line of log.jsonl, so a resumed log matches. */
  readonly pendingLog: { readonly sum: number; readonly count: number };
}

export interface Checkpoint {
  readonly config: ModelConfig;
  readonly vocab: readonly string[];
  readonly params: Float32Array;
  readonly buffers: Float32Array;
  readonly state: TrainingState;
}

interface HeaderEntry {
  dtype: string;
  shape: number[];
  data_offsets: [number, number];
}

export function encodeCheckpoint(ck: Checkpoint): Uint8Array {
  const layout = modelLayout(ck.config);
  const tensors = [
    ...layout.params.map((t) => ({ t, src: ck.params })),
    ...layout.buffers.map((t) => ({ t, src: ck.buffers })),
  ];
  const header: Record<string, HeaderEntry | Record<string, string>> = {
    __metadata__: {
      format: FORMAT,
      format_version: FORMAT_VERSION,
      config: JSON.stringify(ck.config),
      vocab: JSON.stringify(ck.vocab),
      state: JSON.stringify(ck.state),
    },
  };
  let offset = 0;
  for (const { t } of tensors) {
    header[t.name] = {
      dtype: "F32",
      shape: [...t.shape],
      data_offsets: [offset, offset + 4 * t.size],
    };
    offset += 4 * t.size;
  }
  let json = JSON.stringify(header);
  json += " ".repeat((8 - ((8 + new TextEncoder().encode(json).length) % 8)) % 8);
  const head = new TextEncoder().encode(json);
  const out = new Uint8Array(8 + head.length + offset);
  new DataView(out.buffer).setBigUint64(0, BigInt(head.length), true);
  out.set(head, 8);
  const data = new DataView(out.buffer, 8 + head.length);
  let at = 0;
  for (const { t, src } of tensors) {
    for (let i = 0; i < t.size; i++, at += 4) data.setFloat32(at, src[t.offset + i], true);
  }
  return out;
}

/** Parses and validates a checkpoint; every problem is a one-line UserError naming the file. */
export function decodeCheckpoint(bytes: Uint8Array, name: string): Checkpoint {
  const bad = (why: string): never => {
    throw new UserError(`${name}: not a valid checkpoint (${why})`);
  };
  if (bytes.length < 8) bad("truncated: no header");
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const headerLength = Number(dv.getBigUint64(0, true));
  if (headerLength > bytes.length - 8 || headerLength > 100_000_000) {
    bad("truncated or corrupt header length");
  }
  let header: Record<string, unknown>;
  try {
    header = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(
      bytes.subarray(8, 8 + headerLength),
    ));
  } catch {
    return bad("corrupt header");
  }
  if (typeof header !== "object" || header === null) bad("corrupt header");
  const meta = header.__metadata__ as Record<string, string> | undefined;
  if (!meta || meta.format !== FORMAT) bad(`missing the '${FORMAT}' metadata`);
  if (meta!.format_version !== FORMAT_VERSION) {
    bad(`format version ${meta!.format_version}, expected ${FORMAT_VERSION}`);
  }
  let config: ModelConfig;
  let vocab: string[];
  let state: TrainingState;
  try {
    config = JSON.parse(meta!.config);
    vocab = JSON.parse(meta!.vocab);
    state = JSON.parse(meta!.state);
  } catch {
    return bad("corrupt metadata");
  }
  if (!Array.isArray(vocab) || vocab.length !== config.vocabSize || vocab[0] !== ".") {
    bad("vocabulary does not match the model");
  }
  let layout;
  try {
    layout = modelLayout(config);
  } catch {
    return bad("corrupt model config");
  }
  const dataStart = 8 + headerLength;
  const dataLength = bytes.length - dataStart;
  const params = new Float32Array(layout.nParams);
  const buffers = new Float32Array(layout.nBuffers);
  const read = (
    t: { name: string; shape: readonly number[]; offset: number; size: number },
    into: Float32Array,
  ) => {
    const e = header[t.name] as HeaderEntry | undefined;
    if (!e) bad(`no tensor '${t.name}'`);
    if (e!.dtype !== "F32") bad(`'${t.name}' is ${e!.dtype}, expected F32`);
    if (JSON.stringify(e!.shape) !== JSON.stringify(t.shape)) {
      bad(`'${t.name}' has shape [${e!.shape}], expected [${t.shape}]`);
    }
    const [begin, end] = e!.data_offsets;
    if (!(begin >= 0 && end === begin + 4 * t.size && end <= dataLength)) {
      bad(`'${t.name}' lies outside the file (truncated?)`);
    }
    const view = new DataView(bytes.buffer, bytes.byteOffset + dataStart + begin, 4 * t.size);
    for (let i = 0; i < t.size; i++) into[t.offset + i] = view.getFloat32(4 * i, true);
  };
  layout.params.forEach((t) => read(t, params));
  layout.buffers.forEach((t) => read(t, buffers));
  return { config: config!, vocab: vocab!, params, buffers, state: state! };
}

export async function saveCheckpoint(path: string, ck: Checkpoint): Promise<void> {
  await writeFileAtomic(path, encodeCheckpoint(ck));
}

export async function loadCheckpoint(path: string): Promise<Checkpoint> {
  return decodeCheckpoint(await readUserFile(path, "checkpoint"), path);
}
