/**
 * `deno task bench`: how fast each preset trains on this machine's WebGPU adapter, against the
 * CPU baselines a user could run instead (PyTorch, and NumPy with a hand-written backward, both
 * with the BLAS they load named), the phase after training (calibration and evaluation), and
 * the shape of a step for each kernel family (invocations per dispatch and serial depth, the
 * stand-in for GPU time when there is no GPU). `--browser` adds the same training loop in
 * headless Chromium's WebGPU. See BENCHMARKS.md for what was measured with it.
 */

import { runCommand } from "../src/cli/common.ts";
import { defineCommand, UsageError, type Values } from "../src/cli/flags.ts";
import { C } from "../src/gpu/abi.ts";
import type { FamilyName } from "../src/gpu/family.ts";
import { benchReplicas, printReplicaTable } from "./replicas.ts";
import { makeDataset } from "../src/data.ts";
import { readWords } from "../src/files.ts";
import { describeAdapter, type Gpu, openGpu } from "../src/gpu/device.ts";
import { FAMILIES } from "../src/gpu/model.ts";
import { macsPerStep, measurePostTraining, measureTraining, stepShape } from "../src/gpu/speed.ts";
import { type ModelConfig, type PresetName, PRESETS } from "../src/model.ts";
import { profileStep } from "./profile.ts";
import { type Baseline, runBaselines } from "./baselines.ts";
import { benchInBrowser } from "./browser.ts";

const command = defineCommand({
  summary: "Benchmark training on WebGPU against PyTorch and NumPy on the CPU.",
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
      "baseline-steps": {
        kind: "int",
        arg: "N",
        min: 0,
        help: "steps each CPU baseline times (at 1 and 2 threads); 0 skips them",
        default: 1000,
      },
      "no-post": { kind: "bool", help: "skip the post-training phase (calibration, evaluation)" },
      "profile-reps": {
        kind: "int",
        arg: "N",
        min: 0,
        help: "repetitions per kernel in the per-kernel breakdown; 0 skips it",
        default: 0,
      },
      kernels: {
        kind: "choice",
        arg: "NAME",
        choices: ["auto", ...Object.keys(FAMILIES)],
        help: "the kernel family to time",
        default: "auto",
      },
      browser: { kind: "bool", help: "also time the training in headless Chromium's WebGPU" },
      data: {
        kind: "string",
        arg: "FILE",
        help: "names file for the batches",
        default: "data/names.txt",
      },
      json: { kind: "bool", help: "print one JSON object instead of the tables" },
      replicas: {
        kind: "string",
        arg: "N,N,...",
        help: "instead: the aggregate model-steps/s of groups of N replicas trained in the " +
          "same dispatches, for --preset (all: the MLP presets) and --kernels (auto: both " +
          "families), against PyTorch training N networks batched (--baseline-steps steps)",
      },
    },
  },
});

interface PresetResult {
  preset: PresetName;
  family: string;
  usPerStep: number;
  encodeUsPerStep: number;
  roundUs: number[];
  macsPerStep: number;
  gmacs: number;
  post?: { calibrateSeconds: number; evaluateSeconds: number; gmacs: number };
  torch?: Baseline;
  numpy?: Baseline;
  browser?: { usPerStep: number; adapter: string } | { error: string };
  shapes: ReturnType<typeof stepShape>[];
  kernels: { kernel: string; us: number; dispatches: number }[];
}

/** "AMD EPYC (AVX2), 2 cores": the CPU from lscpu (Deno reads /proc only with --allow-all). */
async function machine(): Promise<string> {
  let cpu = "unknown CPU";
  try {
    const out = await new Deno.Command("lscpu", { stdout: "piped", stderr: "null" }).output();
    const text = new TextDecoder().decode(out.stdout);
    cpu = text.match(/^Model name:\s*(.*)$/m)?.[1] ?? cpu;
    const flags = text.match(/^Flags:\s*(.*)$/m)?.[1] ?? "";
    cpu += flags.includes("avx512f") ? " (AVX-512)" : flags.includes("avx2") ? " (AVX2)" : "";
  } catch { /* no lscpu */ }
  return `${cpu}, ${navigator.hardwareConcurrency} cores`;
}

/**
 * The Mesa release of the Vulkan driver in use (lavapipe, on a machine without a GPU), read from
 * the driver library its ICD file names (VK_DRIVER_FILES or VK_ICD_FILENAMES, else the
 * system's): its speed differs between releases by up to 3.5x (README, "Speed").
 */
async function mesaVersion(): Promise<string> {
  const env = Deno.env.get("VK_DRIVER_FILES") ?? Deno.env.get("VK_ICD_FILENAMES");
  const icds = env ? env.split(":") : [];
  if (!icds.length) {
    try {
      for await (const e of Deno.readDir("/usr/share/vulkan/icd.d")) {
        if (e.name.startsWith("lvp_icd")) icds.push(`/usr/share/vulkan/icd.d/${e.name}`);
      }
    } catch { /* no system ICDs */ }
  }
  for (const icd of icds) {
    try {
      const lib = JSON.parse(await Deno.readTextFile(icd)).ICD?.library_path;
      if (typeof lib !== "string") continue;
      const bytes = await Deno.readFile(
        lib.startsWith("/") ? lib : `/usr/lib/x86_64-linux-gnu/${lib}`,
      );
      const m = /Mesa (\d+\.\d+\.\d+)/.exec(new TextDecoder("latin1").decode(bytes));
      if (m) return `Mesa ${m[1]} (${lib})`;
    } catch { /* unreadable: try the next */ }
  }
  return "unknown";
}

/** Progress on stderr, so that stdout holds only the tables (or the JSON). */
const progress = (line: string) => console.error(line);

const f0 = (x: number) => x.toFixed(0);
const ratio = (base: Baseline | undefined, us: number) =>
  base && "usPerStep" in base ? `${(base.usPerStep / us).toFixed(2)}x` : "-";
const cell = (b: Baseline | undefined) =>
  !b
    ? "skipped"
    : "error" in b
    ? `n/a: ${b.error}`
    : `${f0(b.usPerStep)} (${b.blas}${
      b.referenceBlas ? ", reference BLAS!" : ""
    }, ${b.threads} thread${b.threads > 1 ? "s" : ""})`;

function printTables(results: PresetResult[], head: Record<string, string>): void {
  for (const [k, v] of Object.entries(head)) console.log(`${k}: ${v}`);
  console.log("");
  console.log(
    "| preset | WebGPU us/step | host us/step | G multiply-adds/s | PyTorch CPU us/step | WebGPU vs PyTorch | NumPy CPU us/step | WebGPU vs NumPy |",
  );
  console.log("|---|---:|---:|---:|---:|---:|---:|---:|");
  for (const r of results) {
    console.log(
      `| ${r.preset} | ${f0(r.usPerStep)} (${r.family} kernels) | ${
        r.encodeUsPerStep.toFixed(1)
      } | ${r.gmacs.toFixed(2)} | ${cell(r.torch)} | ${ratio(r.torch, r.usPerStep)} | ${
        cell(r.numpy)
      } | ${ratio(r.numpy, r.usPerStep)} |`,
    );
  }
  for (const r of results) {
    for (const b of [r.torch, r.numpy]) {
      if (b && "usPerStep" in b && b.referenceBlas) {
        console.log(
          `\nwarning: ${b.library} uses the reference BLAS (${b.blasPath}), which no user would ` +
            "benchmark with: on Debian, apt-get install libopenblas0-openmp",
        );
      }
    }
  }
  if (results.some((r) => r.post)) {
    console.log("\nAfter training: BatchNorm calibration over the training split (which also");
    console.log("evaluates it), then the val and test splits:\n");
    console.log(
      "| preset | calibration | val + test | total | G multiply-adds/s | training step G multiply-adds/s |",
    );
    console.log("|---|---:|---:|---:|---:|---:|");
    for (const r of results) {
      if (!r.post) continue;
      const p = r.post;
      console.log(
        `| ${r.preset} | ${p.calibrateSeconds.toFixed(1)} s | ${p.evaluateSeconds.toFixed(1)} s | ${
          (p.calibrateSeconds + p.evaluateSeconds).toFixed(1)
        } s | ${p.gmacs.toFixed(2)} | ${r.gmacs.toFixed(2)} |`,
      );
    }
  }
  if (results.some((r) => r.browser)) {
    console.log("\nThe same loop in headless Chromium (Dawn, its software adapter):\n");
    console.log("| preset | Chromium us/step | Deno us/step |");
    console.log("|---|---:|---:|");
    for (const r of results) {
      const b = r.browser;
      const text = !b
        ? "skipped"
        : "error" in b
        ? `n/a: ${b.error}`
        : `${f0(b.usPerStep)} (${b.adapter})`;
      console.log(`| ${r.preset} | ${text} | ${f0(r.usPerStep)} |`);
    }
  }
  console.log("\nhost us/step: the time trainChunk takes per step to upload the batches and the");
  console.log("Step uniforms and to encode the dispatches (the rest is the device's).");
  console.log("\nThe step's shape per kernel family (computed from the plan, no device needed):");
  console.log("serial depth = the loop iterations of the busiest invocation, summed over the");
  console.log("step's dispatches; invocations = of the smallest and largest linear dispatch.\n");
  console.log("| preset | family | dispatches/step | serial depth | linear dispatch invocations |");
  console.log("|---|---|---:|---:|---:|");
  for (const r of results) {
    for (const s of r.shapes) {
      const linear = s.dispatches.filter((d) => /^(linear|matmul)/.test(d.kernel));
      const inv = linear.map((d) => d.invocations);
      console.log(
        `| ${r.preset} | ${s.family} | ${s.dispatches.length} | ${
          s.serialDepth.toLocaleString("en-US")
        } | ${Math.min(...inv).toLocaleString("en-US")} - ${
          Math.max(...inv).toLocaleString("en-US")
        } |`,
      );
    }
  }
  for (const r of results) {
    if (!r.kernels.length) continue;
    const total = r.kernels.reduce((a, k) => a + k.us, 0);
    console.log(`\nPer-kernel breakdown, ${r.preset} (each kernel timed alone; us per step):\n`);
    console.log("| kernel | dispatches/step | us/step | share |");
    console.log("|---|---:|---:|---:|");
    for (const k of [...r.kernels].sort((a, b) => b.us - a.us)) {
      console.log(`| ${k.kernel} | ${k.dispatches} | ${f0(k.us)} | ${f0((100 * k.us) / total)}% |`);
    }
  }
}

/** The head of every table: when, where and how it was measured. */
async function headOf(gpu: Gpu) {
  return {
    date: new Date().toISOString().slice(0, 10),
    machine: await machine(),
    adapter: describeAdapter(gpu.adapter),
    ...(gpu.adapter.fallback ? { mesa: await mesaVersion() } : {}),
    deno: Deno.version.deno,
    command: `deno task bench ${Deno.args.join(" ")}`.trimEnd(),
  };
}

async function mainReplicas(values: Values<typeof command.groups>, list: string): Promise<void> {
  const replicas = list.split(",").map(Number);
  if (!replicas.every((n) => Number.isInteger(n) && n >= 1 && n <= C.MAX_REPLICAS)) {
    throw new UsageError(`--replicas: a list of whole numbers from 1 to ${C.MAX_REPLICAS}`);
  }
  const presets = (values.preset === "all" ? ["lecture", "seed"] : [values.preset]) as PresetName[];
  const families =
    (values.kernels === "auto" ? Object.keys(FAMILIES) : [values.kernels]) as FamilyName[];
  const words = await readWords(values.data);
  const gpu = await openGpu();
  try {
    const rows = await benchReplicas(gpu, words, {
      presets,
      families,
      replicas,
      chunkSteps: values["chunk-steps"],
      chunks: values.chunks,
      rounds: values.rounds,
      baselineSteps: values["baseline-steps"],
      progress,
    });
    const head = await headOf(gpu);
    if (values.json) console.log(JSON.stringify({ ...head, rows }));
    else {
      for (const [k, v] of Object.entries(head)) console.log(`${k}: ${v}`);
      console.log("");
      printReplicaTable(rows);
    }
  } finally {
    gpu.device.destroy();
  }
}

async function main(values: Values<typeof command.groups>): Promise<void> {
  if (values.replicas !== undefined) return await mainReplicas(values, values.replicas);
  const presets =
    (values.preset === "all" ? Object.keys(PRESETS) : [values.preset]) as PresetName[];
  const words = await readWords(values.data);
  const gpu = await openGpu();
  const family = values.kernels === "auto" ? undefined : values.kernels as "software" | "gpu";
  const results: PresetResult[] = [];
  try {
    for (const preset of presets) {
      const p = PRESETS[preset];
      const ds = makeDataset(words, p.model.blockSize, 42);
      const config: ModelConfig = { ...p.model, vocabSize: ds.vocab.size };
      const B = p.train.batchSize;
      progress(`${preset}: timing the training steps on ${describeAdapter(gpu.adapter)}`);
      const speed = await measureTraining(gpu, config, ds.examples.train, {
        batchSize: B,
        rounds: values.rounds,
        chunks: values.chunks,
        chunkSteps: values["chunk-steps"],
        family,
      });
      const macs = macsPerStep(config, B);
      const r: PresetResult = {
        preset,
        family: speed.family,
        usPerStep: speed.usPerStep,
        encodeUsPerStep: speed.encodeUsPerStep,
        roundUs: speed.roundUs,
        macsPerStep: macs,
        gmacs: macs / speed.usPerStep / 1000,
        shapes: Object.values(FAMILIES).map((f) => stepShape(config, B, f)),
        kernels: [],
      };
      if (!values["no-post"]) {
        progress(`${preset}: timing calibration and evaluation over the splits`);
        const post = await measurePostTraining(gpu, config, ds.examples, family);
        r.post = {
          calibrateSeconds: post.calibrateSeconds,
          evaluateSeconds: post.evaluateSeconds,
          gmacs: post.macs / (post.calibrateSeconds + post.evaluateSeconds) / 1e9,
        };
      }
      if (values["profile-reps"] > 0) {
        progress(`${preset}: timing each kernel alone, ${values["profile-reps"]} times`);
        const { GpuModel } = await import("../src/gpu/model.ts");
        const model = await GpuModel.create(gpu, config, { batchSize: B, chunkSteps: 1, family });
        try {
          for (const k of await profileStep(model, values["profile-reps"])) {
            const row = r.kernels.find((x) => x.kernel === k.kernel);
            if (row) {
              row.us += k.us;
              row.dispatches++;
            } else r.kernels.push({ kernel: k.kernel, us: k.us, dispatches: 1 });
          }
        } finally {
          model.destroy();
        }
      }
      if (values["baseline-steps"] > 0) {
        progress(`${preset}: PyTorch and NumPy baselines, at 1 and 2 threads`);
        const b = await runBaselines(preset, values["baseline-steps"]);
        r.torch = b.torch;
        r.numpy = b.numpy;
      }
      if (values.browser) progress(`${preset}: the same loop in headless Chromium`);
      if (values.browser) r.browser = await benchInBrowser(preset, values);
      results.push(r);
    }
  } finally {
    gpu.device.destroy();
  }
  const head = await headOf(gpu);
  if (values.json) console.log(JSON.stringify({ ...head, results }));
  else printTables(results, head);
}

if (import.meta.main) runCommand(command, main);
