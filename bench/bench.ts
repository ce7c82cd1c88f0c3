/**
 * `deno task bench`: training speed of each preset on this machine's WebGPU adapter, with a
 * per-kernel breakdown, side by side with the same network in PyTorch on the CPU
 * (bench/pytorch_baseline.py) when `torch` can be imported.
 *
 * us/step is steady-state training throughput: a round submits `chunks` chunks the way the
 * trainer does (the next one before the previous one's losses are read) and divides its wall
 * time by its steps, so encoding, submission and the loss readback count, everything but data
 * loading. The figure is the median of `rounds` rounds.
 */

import { drawBatches } from "../src/batches.ts";
import { runCommand } from "../src/cli/common.ts";
import { defineCommand, type Values } from "../src/cli/flags.ts";
import { makeDataset } from "../src/data.ts";
import { readWords } from "../src/files.ts";
import { describeAdapter, openGpu } from "../src/gpu/device.ts";
import { GpuModel } from "../src/gpu/model.ts";
import { profileStep } from "./profile.ts";
import {
  initModel,
  type ModelConfig,
  modelLayout,
  type PresetName,
  PRESETS,
} from "../src/model.ts";
import { Rng } from "../src/rng.ts";

const command = defineCommand({
  summary: "Benchmark training speed (GPU via WebGPU, and PyTorch on the CPU when available).",
  usage: "deno task bench [options]",
  groups: {
    Options: {
      preset: {
        kind: "choice",
        arg: "NAME",
        choices: [...Object.keys(PRESETS), "all"],
        help: "which preset",
        default: "all",
      },
      rounds: {
        kind: "int",
        arg: "N",
        min: 1,
        help: "timed rounds per preset; the median is reported",
        default: 3,
      },
      chunks: { kind: "int", arg: "N", min: 1, help: "chunks per round", default: 5 },
      "chunk-steps": {
        kind: "int",
        arg: "N",
        min: 1,
        max: 1000,
        help: "steps per chunk",
        default: 200,
      },
      "torch-steps": {
        kind: "int",
        arg: "N",
        min: 0,
        help: "steps PyTorch times; 0 skips PyTorch",
        default: 1000,
      },
      "profile-reps": {
        kind: "int",
        arg: "N",
        min: 0,
        help: "repetitions per kernel in the breakdown; 0 skips it",
        default: 30,
      },
      data: {
        kind: "string",
        arg: "FILE",
        help: "names file for the batches",
        default: "data/names.txt",
      },
      json: { kind: "bool", help: "print one JSON object per preset instead of the tables" },
    },
  },
});

interface Result {
  preset: PresetName;
  adapter: string;
  usPerStep: number;
  roundUs: number[];
  dispatchesPerStep: number;
  macsPerStep: number;
  gmacs: number;
  projected200kSeconds: number;
  kernels: { kernel: string; us: number; dispatches: number }[];
  torch?: { usPerStep: number; threads: number; version: string } | { error: string };
}

/** Multiply-adds of one step: each layer's x @ W forward, then dW and dx backward. */
export function macsPerStep(config: ModelConfig, batch: number): number {
  return modelLayout(config).layers.reduce((a, l) => a + 3 * batch * l.nIn * l.nOut, 0);
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

async function benchGpu(
  preset: PresetName,
  words: string[],
  { rounds, chunks, chunkSteps, profileReps }: {
    rounds: number;
    chunks: number;
    chunkSteps: number;
    profileReps: number;
  },
): Promise<Result> {
  const gpu = await openGpu();
  try {
    const p = PRESETS[preset];
    const ds = makeDataset(words, p.model.blockSize, 42);
    const config: ModelConfig = { ...p.model, vocabSize: ds.vocab.size };
    const B = p.train.batchSize;
    const model = await GpuModel.create(gpu, config, { batchSize: B, chunkSteps });
    try {
      const { params, buffers } = initModel(config, new Rng(1));
      model.setParams(params, buffers);
      const rng = new Rng(2);
      const lrs = new Array(chunkSteps).fill(p.train.lr);
      const batches = () => drawBatches(rng, ds.examples.train, chunkSteps, B);
      await model.trainChunk(batches(), lrs); // warm-up: pipeline compilation, first touches
      const roundUs: number[] = [];
      for (let r = 0; r < rounds; r++) {
        const start = performance.now();
        let pending = model.trainChunk(batches(), lrs);
        for (let c = 1; c < chunks; c++) {
          const next = model.trainChunk(batches(), lrs);
          await pending;
          pending = next;
        }
        await pending;
        roundUs.push(((performance.now() - start) * 1000) / (chunks * chunkSteps));
      }
      const usPerStep = median(roundUs);
      const macs = macsPerStep(config, B);
      const kernels: Result["kernels"] = [];
      if (profileReps > 0) {
        for (const k of await profileStep(model, profileReps)) {
          const row = kernels.find((r) => r.kernel === k.kernel);
          if (row) {
            row.us += k.us;
            row.dispatches++;
          } else kernels.push({ kernel: k.kernel, us: k.us, dispatches: 1 });
        }
      }
      return {
        preset,
        adapter: describeAdapter(gpu.adapter),
        usPerStep,
        roundUs,
        dispatchesPerStep: model.stepDispatches().length,
        macsPerStep: macs,
        gmacs: macs / usPerStep / 1000,
        projected200kSeconds: (usPerStep * p.train.steps) / 1e6,
        kernels,
      };
    } finally {
      model.destroy();
    }
  } finally {
    gpu.device.destroy();
  }
}

/** Runs the PyTorch baseline with the first Python that can import torch. */
async function benchTorch(preset: PresetName, steps: number): Promise<Result["torch"]> {
  const script = new URL("./pytorch_baseline.py", import.meta.url).pathname;
  // Debian's python3-torch installs for /usr/bin/python3, which may not be first on PATH.
  for (const python of ["python3", "/usr/bin/python3"]) {
    let out: Deno.CommandOutput;
    try {
      out = await new Deno.Command(python, {
        args: [script, "--preset", preset, "--steps", String(steps)],
        stdout: "piped",
        stderr: "piped",
      }).output();
    } catch {
      continue;
    }
    const last = new TextDecoder().decode(out.stdout).trim().split("\n").at(-1) ?? "";
    if (out.code === 3) continue; // that interpreter has no torch
    if (out.code !== 0) {
      return { error: new TextDecoder().decode(out.stderr).trim().split("\n").at(-1) ?? "failed" };
    }
    const r = JSON.parse(last);
    return { usPerStep: r.us_per_step, threads: r.threads, version: r.torch };
  }
  return { error: "torch is not installed (Debian: apt-get install python3-torch)" };
}

/** "AMD EPYC, 2 cores": the CPU model from lscpu (Deno reads /proc only with --allow-all). */
async function machine(): Promise<string> {
  let cpu = "unknown CPU";
  try {
    const out = await new Deno.Command("lscpu", { stdout: "piped", stderr: "null" }).output();
    cpu = new TextDecoder().decode(out.stdout).match(/^Model name:\s*(.*)$/m)?.[1] ?? cpu;
  } catch { /* no lscpu */ }
  return `${cpu}, ${navigator.hardwareConcurrency} cores`;
}

const f0 = (x: number) => x.toFixed(0);

async function printTables(results: Result[], argv: string[]): Promise<void> {
  console.log(`date: ${new Date().toISOString().slice(0, 10)}`);
  console.log(`machine: ${await machine()}`);
  console.log(`adapter: ${results[0]?.adapter}`);
  console.log(`command: deno task bench ${argv.join(" ")}`.trimEnd());
  console.log("");
  console.log(
    "| preset | us/step | dispatches/step | M multiply-adds/step | G multiply-adds/s | 200k steps | PyTorch CPU us/step | speed-up vs PyTorch |",
  );
  console.log("|---|---:|---:|---:|---:|---:|---:|---:|");
  for (const r of results) {
    const t = r.torch && "usPerStep" in r.torch ? r.torch : null;
    console.log(
      `| ${r.preset} | ${f0(r.usPerStep)} | ${r.dispatchesPerStep} | ${
        (r.macsPerStep / 1e6).toFixed(2)
      } | ${r.gmacs.toFixed(2)} | ${f0(r.projected200kSeconds)} s | ${
        t
          ? `${f0(t.usPerStep)} (torch ${t.version}, ${t.threads} thread${
            t.threads > 1 ? "s" : ""
          })`
          : r.torch && "error" in r.torch
          ? `n/a: ${r.torch.error}`
          : "skipped"
      } | ${t ? (t.usPerStep / r.usPerStep).toFixed(2) + "x" : "-"} |`,
    );
  }
  for (const r of results) {
    if (!r.kernels.length) continue;
    const total = r.kernels.reduce((a, k) => a + k.us, 0);
    console.log("");
    console.log(`Per-kernel breakdown, ${r.preset} (each kernel timed alone; us per step):`);
    console.log("");
    console.log("| kernel | dispatches/step | us/step | share |");
    console.log("|---|---:|---:|---:|");
    for (const k of [...r.kernels].sort((a, b) => b.us - a.us)) {
      console.log(`| ${k.kernel} | ${k.dispatches} | ${f0(k.us)} | ${f0((100 * k.us) / total)}% |`);
    }
    console.log(`| total | ${r.dispatchesPerStep} | ${f0(total)} | |`);
  }
}

async function main(values: Values<typeof command.groups>): Promise<void> {
  const which = values.preset;
  const presets = (which === "all" ? Object.keys(PRESETS) : [which]) as PresetName[];
  const words = await readWords(values.data);
  const results: Result[] = [];
  for (const preset of presets) {
    const r = await benchGpu(preset, words, {
      rounds: values.rounds,
      chunks: values.chunks,
      chunkSteps: values["chunk-steps"],
      profileReps: values["profile-reps"],
    });
    if (values["torch-steps"] > 0) r.torch = await benchTorch(preset, values["torch-steps"]);
    if (values.json) console.log(JSON.stringify(r));
    results.push(r);
  }
  if (!values.json) await printTables(results, Deno.args);
}

if (import.meta.main) runCommand(command, main);
