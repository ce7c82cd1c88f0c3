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
import {
  type ModelConfig,
  modelLayout,
  parseModelConfig,
  parseTrainConfig,
  type TrainConfig,
} from "./model.ts";
import type { RngState } from "./rng.ts";
import { parseSchedule, type Schedule } from "./schedule.ts";

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
  /** How the run evaluates and saves, so that a resumed run goes on the same way. */
  readonly schedule: Schedule;
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

const isUint32 = (v: unknown) =>
  typeof v === "number" && Number.isInteger(v) && v >= 0 && v <= 0xffffffff;
const isCount = (v: unknown) => typeof v === "number" && Number.isSafeInteger(v) && v >= 0;
const isObject = (v: unknown): v is Record<string, unknown> =>
  typeof v === "object" && v !== null && !Array.isArray(v);

/** The training state read from outside, or what is wrong with it. */
function parseState(v: unknown): TrainingState | string {
  if (!isObject(v)) return "not an object";
  const train = parseTrainConfig(v.train);
  if (typeof train === "string") return `train: ${train}`;
  const { rng, data, pendingLog } = v;
  if (!isCount(v.step) || (v.step as number) > train.steps) return `step = ${v.step}`;
  if (!Array.isArray(rng) || rng.length !== 4 || !rng.every(isUint32) || rng.every((w) => !w)) {
    return "rng";
  }
  if (!isUint32(v.seed)) return `seed = ${v.seed}`;
  if (!(typeof v.seconds === "number" && Number.isFinite(v.seconds) && v.seconds >= 0)) {
    return `seconds = ${v.seconds}`;
  }
  if (
    !isObject(data) || typeof data.path !== "string" || !/^[0-9a-f]{64}$/.test(String(data.sha256))
  ) {
    return "data";
  }
  const schedule = parseSchedule(v.schedule);
  if (typeof schedule === "string") return `schedule: ${schedule}`;
  if (typeof v.calibrated !== "boolean") return `calibrated = ${v.calibrated}`;
  if (
    !isObject(pendingLog) || !Number.isFinite(pendingLog.sum) || !isCount(pendingLog.count)
  ) {
    return "pendingLog";
  }
  return v as unknown as TrainingState;
}

/**
 * Parses and validates a checkpoint, completely, before anything is used: the header's JSON,
 * every tensor's dtype, shape and byte range (integers, in order, tiling the data exactly, as
 * the safetensors format requires), the config, the vocabulary, the training state, and every
 * value (finite). Every problem is a one-line UserError naming the file.
 */
export function decodeCheckpoint(bytes: Uint8Array, name: string): Checkpoint {
  const bad = (why: string): never => {
    throw new UserError(`${name}: not a valid checkpoint (${why})`);
  };
  if (bytes.length < 8) bad("truncated: no header");
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const headerLength = dv.getBigUint64(0, true);
  if (headerLength > BigInt(Math.min(bytes.length - 8, 100_000_000))) {
    bad("truncated or corrupt header length");
  }
  const dataStart = 8 + Number(headerLength);
  let header: unknown;
  try {
    header = JSON.parse(
      new TextDecoder("utf-8", { fatal: true }).decode(bytes.subarray(8, dataStart)),
    );
  } catch {
    return bad("corrupt header");
  }
  if (!isObject(header)) return bad("corrupt header");
  const meta = header.__metadata__;
  if (!isObject(meta) || meta.format !== FORMAT) bad(`missing the '${FORMAT}' metadata`);
  const m = meta as Record<string, unknown>;
  if (m.format_version !== FORMAT_VERSION) {
    bad(`format version ${m.format_version}, expected ${FORMAT_VERSION}`);
  }
  const json = (key: string): unknown => {
    try {
      if (typeof m[key] !== "string") throw new Error();
      return JSON.parse(m[key] as string);
    } catch {
      return bad(`corrupt metadata '${key}'`);
    }
  };
  const config = parseModelConfig(json("config"));
  if (typeof config === "string") return bad(`bad model config: ${config}`);
  const vocab = json("vocab");
  if (
    !Array.isArray(vocab) || vocab.length !== config.vocabSize || vocab[0] !== "." ||
    !vocab.every((c) => typeof c === "string" && Array.from(c).length === 1) ||
    new Set(vocab).size !== vocab.length
  ) {
    bad("the vocabulary does not match the model");
  }
  const state = parseState(json("state"));
  if (typeof state === "string") return bad(`bad training state: ${state}`);

  const layout = modelLayout(config);
  const params = new Float32Array(layout.nParams);
  const buffers = new Float32Array(layout.nBuffers);
  const expected = [
    ...layout.params.map((t) => ({ t, into: params })),
    ...layout.buffers.map((t) => ({ t, into: buffers })),
  ];
  const names = Object.keys(header).filter((k) => k !== "__metadata__");
  const unknown = names.find((n) => !expected.some(({ t }) => t.name === n));
  if (unknown !== undefined) bad(`unexpected tensor '${unknown}'`);
  const ranges: [number, number, string][] = [];
  for (const { t } of expected) {
    const e = header[t.name];
    if (!isObject(e)) return bad(`no tensor '${t.name}'`);
    if (e.dtype !== "F32") bad(`'${t.name}' is ${e.dtype}, expected F32`);
    const shape = e.shape;
    if (
      !Array.isArray(shape) || shape.length !== t.shape.length ||
      !shape.every((d, i) => d === t.shape[i])
    ) {
      bad(`'${t.name}' has shape ${JSON.stringify(shape)}, expected [${t.shape}]`);
    }
    const offsets = e.data_offsets;
    if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every(isCount)) {
      return bad(`'${t.name}' has bad data_offsets ${JSON.stringify(offsets)}`);
    }
    const [begin, end] = offsets as number[];
    if (end !== begin + 4 * t.size) bad(`'${t.name}': data_offsets do not match its shape`);
    ranges.push([begin, end, t.name]);
  }
  ranges.sort((a, b) => a[0] - b[0]);
  let at = 0;
  for (const [begin, end, tensor] of ranges) {
    if (begin !== at) bad(`'${tensor}' ${begin < at ? "overlaps another tensor" : "leaves a gap"}`);
    at = end;
  }
  if (at !== bytes.length - dataStart) {
    bad(
      at > bytes.length - dataStart
        ? "tensors lie outside the file (truncated?)"
        : "trailing bytes",
    );
  }
  for (const { t, into } of expected) {
    const [begin] = (header[t.name] as { data_offsets: number[] }).data_offsets;
    const view = new DataView(bytes.buffer, bytes.byteOffset + dataStart + begin, 4 * t.size);
    for (let i = 0; i < t.size; i++) {
      const v = view.getFloat32(4 * i, true);
      if (!Number.isFinite(v)) bad(`'${t.name}' holds infinite or NaN values`);
      into[t.offset + i] = v;
    }
  }
  return { config, vocab: vocab as string[], params, buffers, state };
}
