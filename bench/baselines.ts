/**
 * The CPU baselines of `deno task bench`: the same network and loop in PyTorch
 * (bench/pytorch_baseline.py, written as makemore part 3 writes it) and in NumPy
 * (bench/numpy_baseline.py, forward and backward written out, float32), each timed at 1 and
 * at 2 threads, the faster counted, with the BLAS library it actually loaded.
 */

import type { PresetName } from "../src/model.ts";

export type Baseline =
  | {
    readonly library: string;
    readonly usPerStep: number;
    readonly threads: number;
    readonly version: string;
    readonly blas: string;
    readonly blasPath: string;
    readonly referenceBlas: boolean;
    /** us/step at each thread count tried. */
    readonly byThreads: Record<number, number>;
  }
  | { readonly error: string };

/** Runs one script at one thread count with the first Python that has its library. */
async function once(
  script: string,
  preset: PresetName,
  steps: number,
  threads: number,
): Promise<Record<string, unknown> | { error: string }> {
  const path = new URL(script, import.meta.url).pathname;
  // Debian's python3-torch and python3-numpy install for /usr/bin/python3, which may not be
  // the python3 first on PATH.
  let last: { error: string } = { error: "python3 not found" };
  for (const python of ["/usr/bin/python3", "python3"]) {
    let out: Deno.CommandOutput;
    try {
      out = await new Deno.Command(python, {
        args: [path, "--preset", preset, "--steps", String(steps), "--threads", String(threads)],
        stdout: "piped",
        stderr: "piped",
      }).output();
    } catch {
      continue;
    }
    const line = new TextDecoder().decode(out.stdout).trim().split("\n").at(-1) ?? "";
    if (out.code === 3) {
      last = { error: JSON.parse(line).error ?? "not installed" };
      continue; // that interpreter lacks the library
    }
    // 4: the script has no such preset, whichever Python runs it.
    if (out.code === 4) return { error: JSON.parse(line).error ?? "no baseline" };
    if (out.code !== 0) {
      return { error: new TextDecoder().decode(out.stderr).trim().split("\n").at(-1) ?? "failed" };
    }
    return JSON.parse(line);
  }
  return last;
}

async function baseline(
  library: string,
  script: string,
  preset: PresetName,
  steps: number,
): Promise<Baseline> {
  const byThreads: Record<number, number> = {};
  let best: Record<string, unknown> | null = null;
  for (const threads of [1, 2]) {
    const r = await once(script, preset, steps, threads);
    if ("error" in r) return { error: String(r.error) };
    byThreads[threads] = Number(r.us_per_step);
    if (!best || Number(r.us_per_step) < Number(best.us_per_step)) best = r;
  }
  return {
    library,
    usPerStep: Number(best!.us_per_step),
    threads: Number(best!.threads),
    version: String(best!.torch ?? best!.numpy),
    blas: String(best!.blas),
    blasPath: String(best!.blas_path),
    referenceBlas: Boolean(best!.reference_blas),
    byThreads,
  };
}

export async function runBaselines(
  preset: PresetName,
  steps: number,
): Promise<{ torch: Baseline; numpy: Baseline }> {
  return {
    torch: await baseline("PyTorch", "./pytorch_baseline.py", preset, steps),
    numpy: await baseline("NumPy", "./numpy_baseline.py", preset, steps),
  };
}
