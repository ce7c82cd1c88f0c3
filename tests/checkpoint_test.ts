/**
 * Checkpoints: the safetensors layout, an exact round trip, and a one-line refusal for every
 * crafted or damaged file, decided before anything of it is used.
 */

import {
  type Checkpoint,
  decodeCheckpoint,
  encodeCheckpoint,
  type TrainingState,
} from "../src/checkpoint.ts";
import { UserError } from "../src/errors.ts";
import { initModel, type ModelConfig, PRESETS } from "../src/model.ts";
import { Rng } from "../src/rng.ts";
import { DEFAULT_SCHEDULE } from "../src/schedule.ts";
import { assert, assertEquals, assertThrows } from "./util.ts";

const config: ModelConfig = {
  ...PRESETS.lecture.model,
  vocabSize: 4,
  blockSize: 2,
  nEmbd: 3,
  nHidden: 5,
};
const state: TrainingState = {
  step: 3,
  rng: [1, 2, 3, 4],
  train: { steps: 10, batchSize: 4, lr: 0.1, lrFinal: 0.01, decayAt: 5 },
  seed: 9,
  seconds: 1.5,
  data: { path: "/data/names.txt", sha256: "ab".repeat(32) },
  schedule: DEFAULT_SCHEDULE,
  calibrated: false,
  pendingLog: { sum: 0, count: 0 },
};
const good: Checkpoint = {
  config,
  vocab: [".", "a", "b", "c"],
  ...initModel(config, new Rng(1)),
  state,
};

/** The header of an encoded checkpoint, edited, re-encoded around the same data. */
function withHeader(bytes: Uint8Array, edit: (h: Record<string, unknown>) => void): Uint8Array {
  const n = Number(new DataView(bytes.buffer).getBigUint64(0, true));
  const header = JSON.parse(new TextDecoder().decode(bytes.subarray(8, 8 + n)));
  edit(header);
  const json = new TextEncoder().encode(JSON.stringify(header));
  const out = new Uint8Array(8 + json.length + bytes.length - 8 - n);
  new DataView(out.buffer).setBigUint64(0, BigInt(json.length), true);
  out.set(json, 8);
  out.set(bytes.subarray(8 + n), 8 + json.length);
  return out;
}

const meta = (h: Record<string, unknown>) => h.__metadata__ as Record<string, string>;
const editJson = (
  h: Record<string, unknown>,
  key: string,
  f: (v: Record<string, unknown>) => unknown,
) => {
  meta(h)[key] = JSON.stringify(f(JSON.parse(meta(h)[key])));
};

Deno.test("checkpoint: encode -> decode is exact, and the header is valid safetensors", () => {
  const bytes = encodeCheckpoint(good);
  // The format: u64 little-endian header size, a JSON header of tensors whose byte ranges tile
  // the data section in order, string metadata, the data 8-byte aligned.
  const n = Number(new DataView(bytes.buffer).getBigUint64(0, true));
  assertEquals((8 + n) % 8, 0);
  const header = JSON.parse(new TextDecoder().decode(bytes.subarray(8, 8 + n)));
  let end = 0;
  for (const [name, t] of Object.entries(header)) {
    if (name === "__metadata__") continue;
    const { dtype, shape, data_offsets: [b, e] } = t as {
      dtype: string;
      shape: number[];
      data_offsets: number[];
    };
    assertEquals(dtype, "F32");
    assertEquals(b, end, `${name} starts where the previous tensor ended`);
    assertEquals(e - b, 4 * shape.reduce((x, y) => x * y, 1));
    end = e;
  }
  assertEquals(8 + n + end, bytes.length);
  assert(Object.values(header.__metadata__).every((v) => typeof v === "string"), "metadata");
  const ck = decodeCheckpoint(bytes, "ck");
  assertEquals(ck.params, good.params);
  assertEquals(ck.buffers, good.buffers);
  assertEquals(ck.state, state);
  assertEquals(ck.vocab, good.vocab);
  assertEquals(ck.config, config);
});

Deno.test("checkpoint: a file whose tensors are stored in another order reads by its data_offsets", () => {
  // What another safetensors writer may produce: the same header entries, the data of the
  // tensors in reverse order. A reader that took them in layout order would swap them.
  const deep: Checkpoint = {
    config: { ...PRESETS.seed.model, vocabSize: 5, blockSize: 2, nEmbd: 3, nHidden: 6, nLayers: 3 },
    vocab: [".", "a", "b", "c", "d"],
    ...initModel(
      { ...PRESETS.seed.model, vocabSize: 5, blockSize: 2, nEmbd: 3, nHidden: 6, nLayers: 3 },
      new Rng(2),
    ),
    state,
  };
  const bytes = encodeCheckpoint(deep);
  const n = Number(new DataView(bytes.buffer).getBigUint64(0, true));
  const header = JSON.parse(new TextDecoder().decode(bytes.subarray(8, 8 + n)));
  const names = Object.keys(header).filter((k) => k !== "__metadata__");
  assert(names.length > 10, `${names.length} tensors`);
  const data = bytes.subarray(8 + n);
  const chunks = names.map((k) => data.slice(...(header[k].data_offsets as [number, number])));
  const reordered = new Uint8Array(data.length);
  let at = 0;
  for (let i = names.length - 1; i >= 0; i--) {
    header[names[i]].data_offsets = [at, at + chunks[i].length];
    reordered.set(chunks[i], at);
    at += chunks[i].length;
  }
  const json = new TextEncoder().encode(JSON.stringify(header));
  const out = new Uint8Array(8 + json.length + reordered.length);
  new DataView(out.buffer).setBigUint64(0, BigInt(json.length), true);
  out.set(json, 8);
  out.set(reordered, 8 + json.length);
  const ck = decodeCheckpoint(out, "reordered");
  assertEquals(ck.params, deep.params);
  assertEquals(ck.buffers, deep.buffers);
});

Deno.test("checkpoint: a network listed by its layers travels in the config; a bad list is refused", () => {
  const wavenet = { ...PRESETS.wavenet.model, vocabSize: 4, nEmbd: 2, nHidden: 4 };
  const listed: ModelConfig = {
    ...wavenet,
    layers: wavenet.layers.map((l) =>
      l.kind === "embedding"
        ? { ...l, dim: 2 }
        : l.kind === "linear" && l.out !== "vocab"
        ? { ...l, out: 4 }
        : l
    ),
  };
  const ck: Checkpoint = { ...good, config: listed, ...initModel(listed, new Rng(4)) };
  const back = decodeCheckpoint(encodeCheckpoint(ck), "ck");
  assertEquals(back.config, listed);
  assertEquals(back.params, ck.params);
  // A list the kernels cannot run (the context of 8 not joined down to 1) is refused in a line.
  const bad = withHeader(
    encodeCheckpoint(ck),
    (h) =>
      editJson(h, "config", (c) => ({
        ...c,
        layers: (c.layers as unknown[]).slice(0, -5).concat(
          (c.layers as unknown[]).slice(-1),
        ),
      })),
  );
  const err = assertThrows(() => decodeCheckpoint(bad, "bad.safetensors"), UserError);
  assert(/bad\.safetensors: .*layers: .*positions/.test(err.message), err.message);
});

Deno.test("checkpoint: every crafted or damaged file gets a one-line refusal", () => {
  const bytes = encodeCheckpoint(good);
  const emb = "embedding.weight";
  const entry = (h: Record<string, unknown>, name: string) => h[name] as Record<string, unknown>;
  const cases: [string, Uint8Array, RegExp][] = [
    ["empty", new Uint8Array(0), /truncated: no header/],
    ["truncated", bytes.subarray(0, bytes.length - 10), /outside the file \(truncated\?\)/],
    ["trailing bytes", new Uint8Array([...bytes, 0, 0, 0, 0]), /trailing bytes/],
    [
      "header length 2^64 - 1",
      (() => {
        const b = bytes.slice();
        new DataView(b.buffer).setBigUint64(0, 0xffffffffffffffffn, true);
        return b;
      })(),
      /corrupt header length/,
    ],
    [
      "not JSON",
      (() => {
        const b = bytes.slice();
        b.fill(0x7b, 20, 40);
        return b;
      })(),
      /corrupt header/,
    ],
    [
      "missing data_offsets",
      withHeader(bytes, (h) => delete entry(h, emb).data_offsets),
      /bad data_offsets/,
    ],
    [
      "numeric data_offsets",
      withHeader(bytes, (h) => entry(h, emb).data_offsets = 7),
      /bad data_offsets/,
    ],
    [
      "fractional offsets",
      withHeader(bytes, (h) => entry(h, emb).data_offsets = [0.5, 48.5]),
      /bad data_offsets/,
    ],
    [
      "overlapping offsets",
      withHeader(bytes, (h) => {
        const [b, e] = entry(h, "hidden.0.weight").data_offsets as number[];
        entry(h, "hidden.0.weight").data_offsets = [b - 4, e - 4];
      }),
      /overlaps another tensor|leaves a gap/,
    ],
    [
      "a string in the shape",
      withHeader(bytes, (h) => entry(h, emb).shape = ["4", 3]),
      /shape \["4",3\], expected \[4,3\]/,
    ],
    ["F16", withHeader(bytes, (h) => entry(h, emb).dtype = "F16"), /is F16, expected F32/],
    ["a missing tensor", withHeader(bytes, (h) => delete h[emb]), /no tensor 'embedding.weight'/],
    ["an unknown tensor", withHeader(bytes, (h) => h.extra = h[emb]), /unexpected tensor 'extra'/],
    [
      "no metadata",
      withHeader(bytes, (h) => delete h.__metadata__),
      /missing the 'makemore-webgpu' metadata/,
    ],
    [
      "format version 2",
      withHeader(bytes, (h) => meta(h).format_version = "2"),
      /format version 2/,
    ],
    ["config null", withHeader(bytes, (h) => meta(h).config = "null"), /bad model config/],
    [
      "config not JSON",
      withHeader(bytes, (h) => meta(h).config = "{"),
      /corrupt metadata 'config'/,
    ],
    [
      "negative size",
      withHeader(bytes, (h) => editJson(h, "config", (c) => ({ ...c, nHidden: -5 }))),
      /bad model config: nHidden = -5/,
    ],
    [
      "huge size",
      withHeader(bytes, (h) => editJson(h, "config", (c) => ({ ...c, nHidden: 1e9 }))),
      /bad model config: nHidden = 1000000000/,
    ],
    [
      "size as a string",
      withHeader(bytes, (h) => editJson(h, "config", (c) => ({ ...c, nHidden: "5" }))),
      /bad model config: nHidden = "5"/,
    ],
    [
      "duplicate vocabulary",
      withHeader(bytes, (h) => meta(h).vocab = '[".","a","a","c"]'),
      /vocabulary/,
    ],
    [
      "vocabulary of words",
      withHeader(bytes, (h) => meta(h).vocab = '[".","ab","b","c"]'),
      /vocabulary/,
    ],
    [
      "state null",
      withHeader(bytes, (h) => meta(h).state = "null"),
      /bad training state: not an object/,
    ],
    [
      "state without rng",
      withHeader(bytes, (h) => editJson(h, "state", (s) => ({ ...s, rng: undefined }))),
      /bad training state: rng/,
    ],
    ...['"100"', "150.5", "-5", "11"].map((step): [string, Uint8Array, RegExp] => [
      `step ${step}`,
      withHeader(bytes, (h) => editJson(h, "state", (s) => ({ ...s, step: JSON.parse(step) }))),
      /bad training state: step/,
    ]),
    [
      "a schedule that saves every 0 steps",
      withHeader(bytes, (h) =>
        editJson(h, "state", (s) => ({
          ...s,
          schedule: { ...DEFAULT_SCHEDULE, checkpointEvery: 0 },
        }))),
      /bad training state: schedule: checkpointEvery = 0/,
    ],
    [
      "a learning rate of NaN",
      withHeader(bytes, (h) => {
        meta(h).state = meta(h).state.replace('"lr":0.1', '"lr":"NaN"');
      }),
      /bad training state: train: lr/,
    ],
    [
      "NaN weights",
      (() => {
        const b = bytes.slice();
        const n = Number(new DataView(b.buffer).getBigUint64(0, true));
        new DataView(b.buffer).setFloat32(8 + n + 4, NaN, true);
        return b;
      })(),
      /'embedding.weight' holds infinite or NaN values/,
    ],
  ];
  for (const [name, b, pattern] of cases) {
    const err = assertThrows(() => decodeCheckpoint(b, "ck.safetensors"), UserError);
    assert(pattern.test(err.message), `${name}: '${err.message}' does not match ${pattern}`);
    assert(err.message.startsWith("ck.safetensors: not a valid checkpoint ("), err.message);
    assert(!err.message.includes("\n"), `${name}: one line`);
  }
});
