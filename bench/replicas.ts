/**
 * `deno task bench --replicas 1,2,4,...`: the aggregate training throughput of N models of one
 * shape trained in the same dispatches (a group of replicas, src/gpu/plan.ts), in model-steps
 * per second, for each preset and kernel family, against one run alone and against PyTorch
 * training the same N networks batched (bench/pytorch_batched.py: stacked weights, torch.bmm),
 * at 1 and 2 threads, the faster counted.
 */

import { makeDataset } from "../src/data.ts";
import type { Gpu } from "../src/gpu/device.ts";
import type { FamilyName } from "../src/gpu/family.ts";
import { measureTraining } from "../src/gpu/speed.ts";
import { type ModelConfig, type PresetName, PRESETS } from "../src/model.ts";

export interface ReplicaRow {
  readonly preset: PresetName;
  readonly family: FamilyName;
  readonly replicas: number;
  /** One step of the whole group. */
  readonly usPerStep: number;
  readonly modelStepsPerSecond: number;
  /** Against the same family's N = 1 (the first N measured). */
  readonly speedup: number;
  readonly torch?: { modelStepsPerSecond: number; threads: number; blas: string } | {
    error: string;
  };
}

/** PyTorch's batched baseline for N networks, the faster of 1 and 2 threads. */
async function torchBatched(
  preset: PresetName,
  replicas: number,
  steps: number,
): Promise<NonNullable<ReplicaRow["torch"]>> {
  const path = new URL("./pytorch_batched.py", import.meta.url).pathname;
  let best: NonNullable<ReplicaRow["torch"]> | null = null;
  for (const threads of [1, 2]) {
    let out: Deno.CommandOutput;
    try {
      out = await new Deno.Command("/usr/bin/python3", {
        args: [
          path,
          "--preset",
          preset,
          "--replicas",
          String(replicas),
          "--steps",
          String(steps),
          "--threads",
          String(threads),
        ],
        stdout: "piped",
        stderr: "piped",
      }).output();
    } catch {
      return { error: "/usr/bin/python3 not found" };
    }
    const line = new TextDecoder().decode(out.stdout).trim().split("\n").at(-1) ?? "";
    let r: Record<string, unknown>;
    try {
      r = JSON.parse(line);
    } catch {
      return { error: new TextDecoder().decode(out.stderr).trim().split("\n").at(-1) ?? "failed" };
    }
    if (out.code !== 0 || "error" in r) return { error: String(r.error ?? "failed") };
    const row = {
      modelStepsPerSecond: Number(r.model_steps_per_s),
      threads: Number(r.threads),
      blas: String(r.blas),
    };
    if (
      !best || ("modelStepsPerSecond" in best && row.modelStepsPerSecond > best.modelStepsPerSecond)
    ) {
      best = row;
    }
  }
  return best!;
}

export async function benchReplicas(
  gpu: Gpu,
  words: string[],
  o: {
    presets: readonly PresetName[];
    families: readonly FamilyName[];
    replicas: readonly number[];
    chunkSteps: number;
    chunks: number;
    rounds: number;
    baselineSteps: number;
    progress: (line: string) => void;
  },
): Promise<ReplicaRow[]> {
  const rows: ReplicaRow[] = [];
  for (const preset of o.presets) {
    const p = PRESETS[preset];
    const ds = makeDataset(words, p.model.blockSize, 42);
    const config: ModelConfig = { ...p.model, vocabSize: ds.vocab.size };
    const torch = new Map<number, NonNullable<ReplicaRow["torch"]>>();
    for (const family of o.families) {
      let one = NaN;
      for (const n of o.replicas) {
        o.progress(`${preset}, ${family} kernels: ${n} replica${n > 1 ? "s" : ""}`);
        const speed = await measureTraining(gpu, config, ds.examples.train, {
          batchSize: p.train.batchSize,
          rounds: o.rounds,
          chunks: o.chunks,
          chunkSteps: o.chunkSteps,
          family,
          replicas: n,
        });
        const rate = (n * 1e6) / speed.usPerStep;
        if (Number.isNaN(one)) one = rate;
        if (o.baselineSteps > 0 && !torch.has(n) && preset !== "wavenet") {
          o.progress(`${preset}: PyTorch, ${n} networks batched`);
          torch.set(n, await torchBatched(preset, n, o.baselineSteps));
        }
        rows.push({
          preset,
          family,
          replicas: n,
          usPerStep: speed.usPerStep,
          modelStepsPerSecond: rate,
          speedup: rate / one,
          torch: torch.get(n),
        });
      }
    }
  }
  return rows;
}

export function printReplicaTable(rows: readonly ReplicaRow[]): void {
  console.log(
    "| preset | kernels | N | us per group step | model-steps/s | vs N = 1 | PyTorch batched model-steps/s | WebGPU vs PyTorch |",
  );
  console.log("|---|---|---:|---:|---:|---:|---:|---:|");
  for (const r of rows) {
    const t = r.torch;
    const torch = !t
      ? "-"
      : "error" in t
      ? `n/a: ${t.error}`
      : `${t.modelStepsPerSecond.toFixed(0)} (${t.blas}, ${t.threads} thread${
        t.threads > 1 ? "s" : ""
      })`;
    const vs = t && "modelStepsPerSecond" in t
      ? `${(r.modelStepsPerSecond / t.modelStepsPerSecond).toFixed(2)}x`
      : "-";
    console.log(
      `| ${r.preset} | ${r.family} | ${r.replicas} | ${r.usPerStep.toFixed(0)} | ${
        r.modelStepsPerSecond.toFixed(0)
      } | ${r.speedup.toFixed(2)}x | ${torch} | ${vs} |`,
    );
  }
}
